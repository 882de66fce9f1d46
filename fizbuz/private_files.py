"""Files and folders no other local user may read, at any moment: secrets
(Redis passwords, bearer tokens and the front door's token map, TLS keys).

A file gets its mode when it is created (os.open with 0600, O_EXCL, not
following a link), never by a chmod after its bytes are written, and replaces
the old one by a rename: a reader sees the old file or the new one, whole.
"""

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path, owner=None):
    """`path` as a folder only its owner may enter (created 0700; an existing
    one is closed before anything is written into it)."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if owner is not None:
        os.chown(path, *owner)
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_DIR)
    return path


def write_private(path, text, owner=None):
    """Write `text` to `path` in a file that is 0600 (and `owner` = (uid, gid)'s
    when given) from its creation: a new file opened with that mode, owned
    before the first byte is written, then renamed over `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    return path
