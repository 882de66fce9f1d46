"""Ending a server process together with everything it started."""

import psutil


def end_family(process, grace=10.0):
    """Stop `process` and all its descendants: SIGTERM and up to `grace` seconds
    to exit (none with grace=0), then SIGKILL for what is left. Returns how many
    descendants there were."""
    try:
        family = process.children(recursive=True) + [process]
    except psutil.Error:
        return 0
    survivors = family
    if grace > 0:
        for member in family:
            try:
                member.terminate()
            except psutil.Error:
                pass
        _, survivors = psutil.wait_procs(family, timeout=grace)
    for member in survivors:
        try:
            member.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(survivors, timeout=10)
    return len(family) - 1
