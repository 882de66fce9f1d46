"""Free TCP ports on 127.0.0.1 for servers started by tests and benchmarks."""

import random
import socket

# MMS 1.0.8 refuses ports from 32767 up, so the kernel's ephemeral range
# (32768+) is no use: try random ports below it, checked by binding.
LOW, HIGH = 20000, 32000


def free_port(taken=()):
    """A port in LOW..HIGH that nothing listens on now and not in `taken`."""
    for _ in range(200):
        port = random.randrange(LOW, HIGH)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port found in {LOW}..{HIGH}")
