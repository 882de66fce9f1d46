"""A maintained patch for the worker of mxnet-model-server==1.0.8 (and only that version).

Why: a py-spy profile of one MMS worker at c=64 (issue 25) put 44% of its samples in
MMS's frame decoder, `mms/protocol/otf_message_handler.py`: `_retrieve_buffer` calls
`conn.recv(length)` once per field (every int, every header name and value), so one
request costs dozens of tiny system calls. Another 9-15% went to `emit_metrics`, a
`logger.info("[METRICS]...")` line per metric per batch that the Java frontend then
reads from the worker's stdout, parses and writes again to model_metrics.log.

What it changes, in the worker process only (nothing in MMS's files on disk):
- `retrieve_msg` reads the socket through a buffer (one `recv` for many fields) and
  decodes the frame with `struct` over a memoryview. It returns exactly what MMS's own
  decoder returns (same dicts, bytearray/str/JSON values, the same errors, the same
  "Frontend disconnected." exit on a closed socket, also mid-frame); the tests check it
  against MMS's decoder on recorded real frames and generated ones, split at every byte.
- `emit_metrics` writes the per-batch `[METRICS]` lines only when FIZBUZ_MODEL_METRICS_LOG=1
  (Prometheus has these figures; serving/metrics reads none of these lines).
  The reply is still built by MMS and sent in one `send` per batch, as before.

Switches: FIZBUZ_MMS_FAST_PROTOCOL=0 (start_mms.sh) leaves this module out altogether, so the
workers are MMS's as shipped; FIZBUZ_MODEL_METRICS_LOG=1 keeps the lines (the cli hands the workers
that variable as 1 or 0). The patch applies only when the installed MMS is exactly 1.0.8 and the
files it replaces or relies on have the sha256 sums below; otherwise it logs why and
leaves MMS as it is. How it gets into a worker: serving/mms/worker_boot/ (a
sitecustomize put on the workers' PYTHONPATH by serving/mms/cli.py) loads this file by
path, so it must import nothing from this project (the container's workers do not have
the app on their path).
"""

import hashlib
import json
import logging
import os
import struct
import sys
from importlib import metadata

MMS_DISTRIBUTION = "mxnet-model-server"
MMS_VERSION = "1.0.8"
# The files whose behaviour this module replaces (the decoder, emit_metrics) or relies
# on (model_service_worker.py imports retrieve_msg and emit_metrics by name at start).
KNOWN_FILES = {
    "protocol/otf_message_handler.py": "040caa724581b8158c5bc59a8d0393a2876aba35969235f9eace3a725c97d20c",
    "service.py": "dfa1770fefc4116b6dde8a3e3c9c2837be50deceefc0b3c1a2ee2d47da756521",
    "model_service_worker.py": "3d6305df1d8c0d7e668a7845a69e1bd1a1acd57c2867a5f26d44aedb3ceb8cb9",
}
FAST_PROTOCOL_ENV = "FIZBUZ_MMS_FAST_PROTOCOL"
# Set for the workers by serving/mms/cli.py from the setting of the same name (the
# handler reads it too: fizbuz_metrics.LOG_LINES_ENV).
METRIC_LINES_ENV = "FIZBUZ_MODEL_METRICS_LOG"

LOAD_MSG = b"L"
PREDICT_MSG = b"I"
END_OF_LIST = -1
# One recv asks for at least this much: a batch of 16 small requests is ~3 KiB, and a
# larger frame is read in as few calls as the kernel allows.
RECV_SIZE = 64 * 1024
_INT = struct.Struct("!i")

log = logging.getLogger(__name__)


class FrameReader:
    """The frontend's byte stream through a buffer. A frame is parsed from the buffer
    in one pass (locals, struct over a memoryview, no call per field); when the
    buffer ends inside it, more is read and the frame parsed again from its start.
    Frames of a batch of small requests arrive whole in one recv, so that is rare."""

    __slots__ = ("conn", "data", "pos")

    def __init__(self, conn):
        self.conn = conn
        self.data = b""
        self.pos = 0

    def more(self, need):
        """At least `need` unread bytes in the buffer, or exit as MMS does when the
        frontend closes the socket (a worker without its frontend has nothing to do)."""
        chunks = [self.data[self.pos :]]
        have = len(chunks[0])
        while have < need:
            packet = self.conn.recv(max(RECV_SIZE, need - have))
            if not packet:
                logging.info("Frontend disconnected.")
                sys.exit(0)
            chunks.append(packet)
            have += len(packet)
        self.data = b"".join(chunks)
        self.pos = 0


class _Short(Exception):
    """The buffer ends inside the frame: `need` bytes from the frame's start would do."""

    def __init__(self, need):
        super().__init__(need)
        self.need = need


_reader = None


def reader_for(conn):
    """One reader per connection, kept across messages: a recv may already hold the
    start of the next frame. A worker serves one connection for its whole life."""
    global _reader
    if _reader is None or _reader.conn is not conn:
        _reader = FrameReader(conn)
    return _reader


def retrieve_msg(conn):
    """MMS's `retrieve_msg`, buffered: (command, message) for the next frame."""
    reader = reader_for(conn)
    # MMS reads this variable for every input; it does not change within a process.
    decode = os.environ.get("MMS_DECODE_INPUT_REQUEST") in (None, "true")
    while True:
        start = reader.pos
        try:
            cmd, msg, end = _parse(memoryview(reader.data), start, decode)
        except _Short as short:
            reader.more(short.need - start)
            continue
        reader.pos = end
        return cmd, msg


def _blob(view, pos):
    """(bytearray of the length-prefixed field at pos, position after it). A length
    <= 0 reads nothing, as MMS's loop does."""
    if pos + 4 > len(view):
        raise _Short(pos + 4)
    (length,) = _INT.unpack_from(view, pos)
    pos += 4
    end = pos + length if length > 0 else pos
    if end > len(view):
        raise _Short(end)
    return bytearray(view[pos:end]), end


def _int(view, pos):
    if pos + 4 > len(view):
        raise _Short(pos + 4)
    return _INT.unpack_from(view, pos)[0], pos + 4


def _parse(view, start, decode):
    """(command, message, end) of the frame at `start`, or _Short."""
    if start + 1 > len(view):
        raise _Short(start + 1)
    cmd = bytearray(view[start : start + 1])
    pos = start + 1
    if cmd == LOAD_MSG:
        msg = {}
        msg["modelName"], pos = _blob(view, pos)
        msg["modelPath"], pos = _blob(view, pos)
        msg["batchSize"], pos = _int(view, pos)
        msg["handler"], pos = _blob(view, pos)
        gpu_id, pos = _int(view, pos)
        if gpu_id >= 0:
            msg["gpu"] = gpu_id
        return cmd, msg, pos
    if cmd != PREDICT_MSG:
        raise ValueError("Invalid command: {}".format(cmd))
    size = len(view)
    unpack = _INT.unpack_from
    batch = []
    while True:
        # The request id, then the headers and the inputs, each list ended by -1.
        if pos + 4 > size:
            raise _Short(pos + 4)
        (length,) = unpack(view, pos)
        pos += 4
        if length == END_OF_LIST:
            return cmd, batch, pos
        end = pos + length if length > 0 else pos
        if end > size:
            raise _Short(end)
        request = {"requestId": bytearray(view[pos:end])}
        pos = end
        headers = []
        while True:
            if pos + 4 > size:
                raise _Short(pos + 4)
            (length,) = unpack(view, pos)
            pos += 4
            if length == END_OF_LIST:
                break
            end = pos + length if length > 0 else pos
            if end + 4 > size:
                raise _Short(end + 4)
            name = bytearray(view[pos:end])
            (length,) = unpack(view, end)
            pos = end + 4
            end = pos + length if length > 0 else pos
            if end > size:
                raise _Short(end)
            headers.append({"name": name, "value": bytearray(view[pos:end])})
            pos = end
        request["headers"] = headers
        inputs = []
        while True:
            if pos + 4 > size:
                raise _Short(pos + 4)
            (length,) = unpack(view, pos)
            pos += 4
            if length == END_OF_LIST:
                break
            end = pos + length if length > 0 else pos
            if end > size:
                raise _Short(end)
            name = bytearray(view[pos:end]).decode("utf-8")
            content_type, pos = _blob(view, end)
            content_type = content_type.decode("utf-8")
            value, pos = _blob(view, pos)
            if decode and content_type == "application/json":
                value = json.loads(value.decode("utf-8"))
            elif decode and content_type.startswith("text"):
                value = value.decode("utf-8")
            inputs.append({"name": name, "contentType": content_type, "value": value})
        request["parameters"] = inputs
        batch.append(request)


def emit_metrics_if_enabled(metrics):
    """MMS's `emit_metrics`, kept only with FIZBUZ_MODEL_METRICS_LOG=1."""
    if _metric_lines:
        _mms_emit_metrics(metrics)


_metric_lines = True
_mms_emit_metrics = None


def file_sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def refusal():
    """Why the patch must not apply here, or None when MMS is the exact known one."""
    try:
        version = metadata.version(MMS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return f"{MMS_DISTRIBUTION} is not installed"
    if version != MMS_VERSION:
        return f"{MMS_DISTRIBUTION} is {version}, this patch is for {MMS_VERSION} only"
    import mms  # after the version check: an import with side effects on a wrong version is avoided

    home = os.path.dirname(os.path.abspath(mms.__file__))
    for relative, expected in KNOWN_FILES.items():
        path = os.path.join(home, relative)
        try:
            found = file_sha256(path)
        except OSError as error:
            return f"cannot read {path}: {error}"
        if found != expected:
            return f"{path} is not the file this patch was written for (sha256 {found[:12]}...)"
    return None


def wanted(environ=os.environ):
    """(buffered protocol, metric lines) as the environment asks."""
    return environ.get(FAST_PROTOCOL_ENV, "1") != "0", environ.get(METRIC_LINES_ENV, "0") == "1"


def apply(environ=os.environ):
    """Patch MMS's modules in this process as the environment asks. Returns what was
    applied (a list of names), empty when nothing was asked or MMS is not the known one.
    Must run before MMS's worker script imports these names."""
    global _metric_lines, _mms_emit_metrics
    fast, lines = wanted(environ)
    if not fast and lines:
        return []
    reason = refusal()
    if reason:
        log.warning("fizbuz fast worker: not applied, MMS stays as it is: %s", reason)
        return []
    from mms import service
    from mms.protocol import otf_message_handler

    applied = []
    if fast:
        otf_message_handler.retrieve_msg = retrieve_msg
        applied.append("buffered protocol")
    if not lines:
        if _mms_emit_metrics is None:
            _mms_emit_metrics = service.emit_metrics
        _metric_lines = False
        service.emit_metrics = emit_metrics_if_enabled
        applied.append("no per-batch metric lines")
    log.info("fizbuz fast worker: %s (MMS %s)", ", ".join(applied), MMS_VERSION)
    return applied
