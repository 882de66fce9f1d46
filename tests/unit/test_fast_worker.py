"""The buffered worker protocol (serving/mms/fast_worker.py) decodes exactly what MMS
1.0.8's own decoder decodes: the same messages, value types, errors and exits, on
frames recorded from MMS's real Java frontend (tests/unit/mms_frames/record.py) and on
generated ones, however the socket splits them."""

import json
import logging
import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mms import service as mms_service
from mms.protocol import otf_message_handler as mms_codec

from serving.mms import fast_worker

FRAMES = Path(__file__).resolve().parent / "mms_frames"
RECORDED = sorted(FRAMES.glob("recorded-*.bin"))
SMALL_FRAME = 8 * 1024  # frames up to this size are split at every byte offset


@pytest.fixture(autouse=True)
def raw_bodies(monkeypatch):
    # What MMS's frontend tells the workers with decode_input_request=false (our config.properties).
    monkeypatch.setenv("MMS_DECODE_INPUT_REQUEST", "false")


class ScriptedConn:
    """A socket whose recv hands out the given chunks in order (never more than
    asked, never across a chunk's end), then b"" as a closed socket does."""

    def __init__(self, chunks):
        self.chunks = [memoryview(bytes(chunk)) for chunk in chunks if chunk]
        self.index = self.pos = 0
        self.recv_calls = 0

    def recv(self, size):
        self.recv_calls += 1
        if self.index == len(self.chunks):
            return b""
        chunk = self.chunks[self.index]
        data = bytes(chunk[self.pos : self.pos + size])
        self.pos += len(data)
        if self.pos == len(chunk):
            self.index, self.pos = self.index + 1, 0
        return data

    def unread(self):
        return sum(len(chunk) for chunk in self.chunks[self.index :]) - self.pos


def typed(value):
    """The value with every type spelled out, so bytes vs bytearray vs str differ."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, tuple):
        return tuple(typed(item) for item in value)
    return (type(value).__name__, value)


def decode_all(decoder, conn, limit=10_000, spell_types=True):
    """(messages, how it ended): decode frames until the decoder exits or raises."""
    messages = []
    for _ in range(limit):
        try:
            message = decoder(conn)
            messages.append(typed(message) if spell_types else message)
        except SystemExit as leaving:
            return messages, ("exit", leaving.code)
        except Exception as error:  # the two decoders must fail alike, whatever the error
            return messages, ("error", type(error).__name__, str(error))
    raise AssertionError("the decoder never stopped")


def assert_same(stream_chunks):
    ours = decode_all(fast_worker.retrieve_msg, ScriptedConn(stream_chunks))
    theirs = decode_all(mms_codec.retrieve_msg, ScriptedConn(stream_chunks))
    assert ours == theirs
    return ours


# ---- frames as MMS's Java frontend writes them (its CodecUtils/ModelRequestEncoder)


def field(data):
    return struct.pack("!i", len(data)) + data


def load_frame(name, path, batch_size, handler, gpu):
    return b"L" + field(name) + field(path) + struct.pack("!i", batch_size) + field(handler) + struct.pack("!i", gpu)


def predict_frame(requests):
    out = b"I"
    for request_id, headers, inputs in requests:
        out += field(request_id)
        for name, value in headers:
            out += field(name) + field(value)
        out += struct.pack("!i", -1)
        for name, content_type, value in inputs:
            out += field(name) + field(content_type) + field(value)
        out += struct.pack("!i", -1)
    return out + struct.pack("!i", -1)


def split_frames(stream):
    """The recorded stream cut into its frames, by where MMS's decoder stops."""
    conn = ScriptedConn([stream])
    frames, start = [], 0
    while conn.unread():
        mms_codec.retrieve_msg(conn)
        end = len(stream) - conn.unread()
        frames.append(stream[start:end])
        start = end
    return frames


# ---- recorded real frames


def test_recordings_exist_and_hold_batches():
    assert RECORDED, f"no recorded frames in {FRAMES}: run tests/unit/mms_frames/record.py"
    frames = split_frames(RECORDED[0].read_bytes())
    assert frames[0][:1] == b"L"
    sizes = [len(mms_codec.retrieve_msg(ScriptedConn([frame]))[1]) for frame in frames[1:]]
    assert max(sizes) > 1, "the recording should hold batches of several requests"
    assert max(len(frame) for frame in frames) > 100_000, "and a large body"


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.name)
def test_recorded_stream_decodes_alike_whole_and_byte_by_byte(path, caplog):
    stream = path.read_bytes()
    messages, ending = assert_same([stream])
    assert ending == ("exit", 0)  # the stream ends: "Frontend disconnected."
    assert len(messages) == len(split_frames(stream))
    # One byte per recv (MMS's decoder is too slow for that on the 120 KB body: ours alone).
    assert decode_all(fast_worker.retrieve_msg, ScriptedConn([stream[i : i + 1] for i in range(len(stream))])) == (
        messages,
        ending,
    )


def ours_split(frame, offsets):
    """Our decoder on the frame cut in two at each offset (MMS's reads field by field
    and gives the same whatever the cut, so its whole-frame answer is the reference)."""
    # Types are checked on the whole frame; a cut cannot change them (same code path), so
    # here plain equality (bytes == bytearray) is enough and much cheaper.
    return {
        offset: decode_all(fast_worker.retrieve_msg, ScriptedConn([frame[:offset], frame[offset:]]), spell_types=False)
        for offset in offsets
    }


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.name)
def test_recorded_frames_split_at_every_offset(path):
    # One frame of each batch size (the rest repeat a layout already cut everywhere).
    frames = {}
    for frame in split_frames(path.read_bytes()):
        frames.setdefault((frame[:1], len(mms_codec.retrieve_msg(ScriptedConn([frame]))[1])), frame)
    for frame in frames.values():
        if len(frame) <= SMALL_FRAME:
            offsets = range(1, len(frame))
        else:  # the fields sit at both ends of a large body: every offset there, a stride between
            offsets = sorted({*range(1, 1024), *range(len(frame) - 1024, len(frame)), *range(1024, len(frame), 2039)})
        assert typed(fast_worker.retrieve_msg(ScriptedConn([frame]))) == typed(
            mms_codec.retrieve_msg(ScriptedConn([frame]))
        )
        expected = decode_all(mms_codec.retrieve_msg, ScriptedConn([frame]), spell_types=False)
        assert expected[1] == ("exit", 0) and len(expected[0]) == 1
        for offset, got in ours_split(frame, offsets).items():
            assert got == expected, offset


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.name)
def test_frontend_gone_mid_frame_exits_like_mms(path, caplog):
    frames = split_frames(path.read_bytes())
    frame = min((f for f in frames if f[:1] == b"I" and len(f) < 2048), key=len)
    caplog.set_level(logging.INFO)
    for cut in range(0, len(frame)):
        caplog.clear()
        messages, ending = assert_same([frame[:cut]])
        assert (messages, ending) == ([], ("exit", 0))
        assert caplog.text.count("Frontend disconnected.") == 2  # once by each decoder


def test_fewer_recv_calls_than_mms():
    frames = split_frames(RECORDED[0].read_bytes())
    batch = max(
        (f for f in frames if len(f) < SMALL_FRAME), key=lambda f: len(mms_codec.retrieve_msg(ScriptedConn([f]))[1])
    )
    ours, theirs = ScriptedConn([batch]), ScriptedConn([batch])
    fast_worker.retrieve_msg(ours)
    mms_codec.retrieve_msg(theirs)
    assert ours.recv_calls == 1
    assert theirs.recv_calls > 20 * ours.recv_calls


# ---- generated frames

names = st.binary(max_size=40)
texts = st.text(max_size=20)
content_types = st.sampled_from(
    ["application/json", "text/plain", "text/csv; charset=utf-8", "application/octet-stream", "", "multipart/form-data"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def an_input(draw):
    content_type = draw(content_types)
    if content_type == "application/json" and draw(st.booleans()):
        value = json.dumps(draw(json_values)).encode()
    elif content_type.startswith("text") and draw(st.booleans()):
        value = draw(st.text(max_size=30)).encode()
    else:
        value = draw(st.binary(max_size=300))  # also invalid JSON and invalid UTF-8
    return draw(texts).encode(), content_type.encode(), value


requests_ = st.tuples(names, st.lists(st.tuples(names, names), max_size=4), st.lists(an_input(), max_size=3))
predict_frames = st.lists(requests_, max_size=6).map(predict_frame)
load_frames = st.builds(
    load_frame, names, names, st.integers(-(2**31), 2**31 - 1), names, st.integers(-(2**31), 2**31 - 1)
)
streams = st.lists(st.one_of(predict_frames, load_frames), min_size=1, max_size=4).map(b"".join)


@st.composite
def split_stream(draw):
    stream = draw(streams)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]


@pytest.mark.parametrize("decode", ["false", "true", None])
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=split_stream(), garbage=st.binary(max_size=3))
def test_generated_frames_decode_alike(monkeypatch, decode, chunks, garbage):
    # MMS_DECODE_INPUT_REQUEST unset or "true": MMS parses JSON/text itself (and fails alike).
    if decode is None:
        monkeypatch.delenv("MMS_DECODE_INPUT_REQUEST", raising=False)
    else:
        monkeypatch.setenv("MMS_DECODE_INPUT_REQUEST", decode)
    # A trailing unknown command or a cut-off frame ends both decoders the same way.
    assert_same(chunks + [garbage])


@given(stream=st.one_of(predict_frames, load_frames))
@settings(max_examples=30)
def test_generated_frames_split_at_every_offset(stream):
    assert_same([stream])
    whole = decode_all(mms_codec.retrieve_msg, ScriptedConn([stream]), spell_types=False)
    for offset, got in ours_split(stream, range(1, len(stream))).items():
        assert got == whole, offset


def test_large_body_over_a_real_socket():
    body = bytes(range(256)) * 4096  # 1 MiB, larger than one recv and the socket buffer
    frame = predict_frame(
        [
            (b"req-1", [(b"X-A", b"1")], [(b"body", b"application/octet-stream", body)]),
            (b"req-2", [], [(b"body", b"application/json", b'{"input.1": 14}')]),
        ]
    )
    expected = decode_all(mms_codec.retrieve_msg, ScriptedConn([frame]))
    ours_end, frontend = socket.socketpair()
    with ours_end, frontend:
        sender = threading.Thread(target=lambda: (frontend.sendall(frame * 2), frontend.shutdown(socket.SHUT_WR)))
        sender.start()
        got = decode_all(fast_worker.retrieve_msg, ours_end)
        sender.join(10)
    assert got[0] == expected[0] * 2 and got[1] == ("exit", 0)
    assert got[0][0][1][0]["parameters"][0]["value"] == ("bytearray", bytearray(body))


# ---- applying the patch


@pytest.fixture
def restore_mms():
    saved = mms_codec.retrieve_msg, mms_service.emit_metrics
    yield
    mms_codec.retrieve_msg, mms_service.emit_metrics = saved


def test_apply_on_mms_1_0_8_replaces_decoder_and_metric_lines(restore_mms, caplog):
    assert fast_worker.refusal() is None
    assert fast_worker.apply({}) == ["buffered protocol", "no per-batch metric lines"]
    assert mms_codec.retrieve_msg is fast_worker.retrieve_msg
    assert mms_service.emit_metrics is fast_worker.emit_metrics_if_enabled
    with caplog.at_level(logging.INFO, logger="mms.service"):
        mms_service.emit_metrics(["PredictionTime.Milliseconds:1.0|#ModelName:x"])
    assert "[METRICS]" not in caplog.text


def test_switches(restore_mms, caplog):
    assert fast_worker.apply({"FIZBUZ_MMS_FAST_PROTOCOL": "0", "FIZBUZ_MODEL_METRICS_LOG": "1"}) == []
    assert mms_codec.retrieve_msg is not fast_worker.retrieve_msg
    assert fast_worker.apply({"FIZBUZ_MODEL_METRICS_LOG": "1"}) == ["buffered protocol"]
    with caplog.at_level(logging.INFO, logger="mms.service"):
        mms_service.emit_metrics(["PredictionTime.Milliseconds:1.0"])
    assert "[METRICS]PredictionTime" in caplog.text


@pytest.mark.parametrize("change", ["version", "file"])
def test_refuses_any_other_mms(restore_mms, monkeypatch, caplog, change):
    if change == "version":
        monkeypatch.setattr(fast_worker.metadata, "version", lambda name: "1.0.9")
    else:
        monkeypatch.setitem(fast_worker.KNOWN_FILES, "protocol/otf_message_handler.py", "0" * 64)
    assert fast_worker.apply({}) == []
    assert mms_codec.retrieve_msg is not fast_worker.retrieve_msg
    assert mms_service.emit_metrics is not fast_worker.emit_metrics_if_enabled
    assert "not applied, MMS stays as it is" in caplog.text
    assert ("1.0.9" if change == "version" else "otf_message_handler.py") in caplog.text


# ---- how the patch gets into a worker


def worker_env_for(*argv):
    from serving.mms import cli
    from serving.mms.process import RunFolder

    args = cli.build_parser().parse_args(["start", *argv])
    cli.validate(args)
    return cli.worker_env(args, RunFolder(Path("/nonexistent-run")))


def test_start_mms_hands_the_workers_the_boot_folder_unless_switched_off(monkeypatch):
    from serving.mms import cli

    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = worker_env_for()
    assert env["PYTHONPATH"].split(":") == [str(cli.WORKER_BOOT), "/somewhere"]
    assert sorted(path.name for path in cli.WORKER_BOOT.iterdir() if path.suffix == ".py") == ["sitecustomize.py"]
    assert (env["FIZBUZ_MMS_FAST_PROTOCOL"], env["FIZBUZ_MODEL_METRICS_LOG"]) == ("1", "0")
    assert worker_env_for("--model-metrics-log", "1")["FIZBUZ_MODEL_METRICS_LOG"] == "1"
    off = worker_env_for("--no-fast-protocol")
    assert off["PYTHONPATH"] == "/somewhere" and off["FIZBUZ_MMS_FAST_PROTOCOL"] == "0"


PROBE = """
import sys
from mms.protocol import otf_message_handler
from mms import service
print(otf_message_handler.retrieve_msg.__module__, service.emit_metrics.__name__, sys.argv[1:])
"""


@pytest.mark.parametrize("script, patched", [("mms/model_service_worker.py", True), ("other/tool.py", False)])
def test_boot_patches_only_a_process_started_as_mms_worker(tmp_path, script, patched):
    import subprocess
    import sys

    from serving.mms import cli

    path = tmp_path / script
    path.parent.mkdir(parents=True)
    path.write_text(PROBE)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cli.WORKER_BOOT)}
    done = subprocess.run(
        [sys.executable, str(path), "--sock-type", "unix"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Error in sitecustomize" not in done.stderr
    if patched:
        assert done.stdout.splitlines() == [
            "fizbuz fast worker: buffered protocol, no per-batch metric lines (MMS 1.0.8)",
            "fizbuz_mms_fast_worker emit_metrics_if_enabled ['--sock-type', 'unix']",
        ]
    else:
        assert done.stdout.splitlines() == ["mms.protocol.otf_message_handler emit_metrics ['--sock-type', 'unix']"]
