"""The one logging set-up of the project's command lines and servers.

Three shapes, chosen by what reads the output:
- "plain" (tools whose output is the result: training, export): the message.
- "progress" (command lines): `==> message` lines a person follows while a
  start, a build or a bench runs; warnings and errors say so.
- "server" (long-running processes whose output goes to a log file): a
  timestamp, the level and the logger's name on every line.
Calling it again changes nothing when a handler is already installed (a
command run from another command keeps its caller's set-up).
"""

import logging
import sys
from typing import Literal, TextIO

FORMATS = {
    "plain": "%(message)s",
    "progress": "==> %(message)s",
    "server": "%(asctime)s %(levelname)s %(name)s: %(message)s",
}


class _ProgressFormatter(logging.Formatter):
    """`==> message`, with the level named when it is a warning or worse."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return text.replace("==> ", f"==> {record.levelname.lower()}: ", 1)
        return text


def setup(
    style: Literal["plain", "progress", "server"] = "progress", level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Install the root handler once: progress lines on stdout, plain and
    server lines on stderr (as logging's own default), or on `stream`."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or (sys.stdout if style == "progress" else sys.stderr))
    formatter_class = _ProgressFormatter if style == "progress" else logging.Formatter
    handler.setFormatter(formatter_class(FORMATS[style]))
    root.addHandler(handler)
    root.setLevel(level)
