"""Follow a log file that a server appends to (`tail -F` for a program): whole
lines only, across reopens, rotations and truncation.

- Starts at the beginning of the file: what was logged before the reader came
  counts too (so a restarted reader loses nothing).
- A partial last line waits in a buffer (bounded) until its newline arrives.
- Rotation (the path now names another file, e.g. renamed away and reopened by
  the server on USR1): the old file is read to its end first, and left only
  once it has stopped growing for `settle` seconds (nginx flushes its buffered
  log at most `flush` seconds later), then the new file is read from its start.
- Truncation (the file shrank below what was read): read again from its start.
"""

import logging
import os
import time

log = logging.getLogger(__name__)


class LogTail:
    def __init__(self, path, chunk=1 << 20, settle=2.5, max_partial=1 << 16, clock=time.monotonic):
        self.path = str(path)
        self.chunk = chunk  # bytes read per call: bounds memory and the time a lock is held
        self.settle = settle
        self.max_partial = max_partial  # a "line" longer than this is dropped as malformed
        self.clock = clock
        self.file = None
        self.inode = None
        self.position = 0
        self.partial = b""
        self.quiet_since = None  # when the rotated-away file was last seen growing
        self.rotations = 0
        self.dropped = 0  # partial or overlong pieces thrown away

    def _open(self):
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return False
        self.file, self.inode, self.position, self.partial = handle, os.fstat(handle.fileno()).st_ino, 0, b""
        self.quiet_since = None
        return True

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None

    def _current_stat(self):
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None

    def read_lines(self):
        """The complete lines (bytes, without newline) appended since the last
        call, at most about `chunk` bytes' worth; [] when there is nothing new."""
        if self.file is None and not self._open():
            return []
        data = self.file.read(self.chunk)
        if data:
            self.position += len(data)
            self.quiet_since = None
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            if len(self.partial) > self.max_partial:
                self.dropped += 1
                self.partial = b""
            return lines
        self._check_replaced()
        return []

    def _check_replaced(self):
        current = self._current_stat()
        if current is not None and current.st_ino == self.inode:
            if current.st_size < self.position:  # truncated in place
                log.info("%s was truncated: reading it again from the start", self.path)
                self.file.seek(0)
                self.position, self.partial = 0, b""
            return
        # Rotated (or removed): the old file may still receive a last flush.
        now = self.clock()
        if self.quiet_since is None:
            self.quiet_since = now
            return
        if now - self.quiet_since < self.settle or current is None:
            return
        if self.partial:
            self.dropped += 1
        self.close()
        self.rotations += 1
        log.info("%s was rotated: now reading the new file from its start", self.path)
        self._open()

    def lag_bytes(self):
        """Bytes written but not read yet (in the current file; a rotated-away
        file being finished counts what is left of it)."""
        if self.file is None:
            current = self._current_stat()
            return current.st_size if current else 0
        left = max(0, os.fstat(self.file.fileno()).st_size - self.position)
        current = self._current_stat()
        if current is not None and current.st_ino != self.inode:
            left += current.st_size
        return left

    def size(self):
        """The size of the file being read (to decide on rotating it)."""
        return os.fstat(self.file.fileno()).st_size if self.file is not None else 0


def flushed_and_read(path, read_all, quiet=1.5, clock=time.monotonic):
    """A condition for wait_until (tests, benches): the log at `path` has not
    grown for `quiet` seconds (nginx flushes each worker's buffer within 1 s,
    so every request that has ended is in it) and `read_all()` says the reader
    has read all of it."""
    last = {"size": -1, "since": 0.0}

    def condition():
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        now = clock()
        if size != last["size"]:
            last.update(size=size, since=now)
            return False
        return now - last["since"] >= quiet and read_all()

    return condition
