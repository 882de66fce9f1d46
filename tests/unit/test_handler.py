"""fizbuz_service against the real converted model unpacked from the built archive."""

import json
import subprocess
import sys

import pytest

import fizbuz_service
from fizbuz_codec import MAX_INPUT, true_label
from fizbuz.handler_harness import batch_context, load_context, raw_request, statuses

BATCH_SIZE = 8  # the handler's registered batch size (tests/unit/conftest.py builds it)


def answer(service, context, bodies):
    batch_context(context, len(bodies))
    replies = service.handle([raw_request(b) for b in bodies], context)
    assert isinstance(replies, list) and len(replies) == len(bodies)
    return [json.loads(r) for r in replies], statuses(context, len(bodies))


def test_single_request_answers_for_the_next_number(service, context):
    replies, codes = answer(service, context, [{"input.1": 14}])
    assert replies == [{"next_number": "FizzBuzz"}]
    assert codes == [200]
    # No response headers at all: MMS 1.0.8's frontend cannot safely decode them.
    assert context.get_response_headers(0) == {}


def test_full_batch(service, context):
    numbers = [2, 4, 9, 14, 29, 98, 500, 1021]
    replies, codes = answer(service, context, [{"input.1": n} for n in numbers])
    assert replies == [{"next_number": true_label(n + 1)} for n in numbers]
    assert codes == [200] * BATCH_SIZE


def test_partial_batch(service, context):
    replies, codes = answer(service, context, [{"input.1": 6}, {"input.1": 7}, {"input.1": 8}])
    assert replies == [{"next_number": "7"}, {"next_number": "8"}, {"next_number": "Fizz"}]
    assert codes == [200, 200, 200]


def test_every_input_in_batches_matches_the_truth(service, context):
    numbers = list(range(0, MAX_INPUT + 1))
    for start in range(0, len(numbers), BATCH_SIZE):
        chunk = numbers[start : start + BATCH_SIZE]
        replies, _ = answer(service, context, [{"input.1": n} for n in chunk])
        assert replies == [{"next_number": true_label(n + 1)} for n in chunk]


def test_bounds_are_accepted(service, context):
    replies, codes = answer(service, context, [{"input.1": 0}, {"input.1": 1022}])
    assert replies == [{"next_number": "1"}, {"next_number": "Fizz"}]  # 1023 = 3 * 341
    assert codes == [200, 200]


def test_mixed_batch_rejects_only_the_bad_requests(service, context):
    bodies = [{"input.1": 14}, {"input.1": 1023}, {"input.1": 2}, b"{oops", {"input.1": 4}]
    replies, codes = answer(service, context, bodies)
    assert codes == [200, 400, 200, 400, 200]
    assert replies[0] == {"next_number": "FizzBuzz"}
    assert replies[2] == {"next_number": "Fizz"}
    assert replies[4] == {"next_number": "Buzz"}
    assert "between 0 and 1022" in replies[1]["error"]
    assert "not valid JSON" in replies[3]["error"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"input.1": 1023}, "between 0 and 1022"),
        ({"input.1": -1}, "between 0 and 1022"),
        ({"input.1": 14.5}, "must be an integer"),
        ({"input.1": True}, "must be an integer"),
        ({"input.1": "x"}, "must be an integer"),
        ({"input.1": None}, "must be an integer"),
        ({"other": 14}, 'missing key "input.1"'),
        ([14], "JSON object"),
        (b"", "empty body"),
        (b"   ", "empty body"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"input.1": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"input.1": 1e999}', "must be an integer"),
        (b'{"input.1": NaN}', "must be an integer"),
    ],
)
def test_bad_requests_get_400_with_a_message(service, context, body, fragment):
    replies, codes = answer(service, context, [body])
    assert codes == [400]
    assert replies[0]["code"] == 400
    assert fragment in replies[0]["error"]


def test_all_bad_batch_still_answers_every_request(service, context):
    replies, codes = answer(service, context, [b"", {"input.1": -5}])
    assert codes == [400, 400]


def test_already_decoded_bodies_are_accepted(service, context):
    # With MMS's default decode_input_request=true, JSON arrives parsed and text as str.
    batch_context(context, 2)
    replies = service.handle([{"body": {"input.1": 14}}, {"body": '{"input.1": 2}'}], context)
    assert [json.loads(r) for r in replies] == [{"next_number": "FizzBuzz"}, {"next_number": "Fizz"}]


def test_form_encoded_json_and_form_fields_are_understood(service, context):
    batch_context(context, 3)
    requests_ = [{}, {"input.1": bytearray(b"29")}, {"other": bytearray(b"1")}]
    replies = [json.loads(r) for r in service.handle(requests_, context)]
    assert "Content-Type: application/json" in replies[0]["error"]
    assert replies[1] == {"next_number": "FizzBuzz"}
    assert "send a JSON body" in replies[2]["error"]
    assert statuses(context, 3) == [400, 200, 400]


def test_no_state_carries_over_between_batches(service, context):
    first, _ = answer(service, context, [{"input.1": n} for n in range(8)])
    answer(service, context, [{"input.1": 1023}, {"input.1": 500}])
    again, _ = answer(service, context, [{"input.1": n} for n in range(8)])
    assert first == again


def test_metrics_are_recorded_for_each_stage(service, context):
    answer(service, context, [{"input.1": 1}, {"input.1": 2}, {"input.1": 3}])
    recorded = {metric.name: metric for metric in context.metrics.store}
    for stage in ("PreprocessTime", "InferenceTime", "PostprocessTime"):
        assert recorded[stage].unit == "Milliseconds"
        assert float(recorded[stage].value) >= 0
    assert float(recorded["BatchSize"].value) == 3


def test_replies_are_plain_json_text(service, context):
    batch_context(context, 2)
    replies = service.handle([raw_request({"input.1": 1}), raw_request(b"")], context)
    assert all(isinstance(r, str) and r.endswith("\n") for r in replies)
    assert all(context.get_response_headers(idx) == {} for idx in range(2))


def status_field_offsets(frame):
    """Parse a reply frame as MMS 1.0.8's ModelResponseDecoder does; return the
    offset of each prediction's 4-byte status code."""
    import struct

    position = 4
    (length,) = struct.unpack_from("!i", frame, position)
    position += 4 + length
    offsets = []
    while True:
        (length,) = struct.unpack_from("!i", frame, position)  # request id
        if length == -1:
            return offsets
        position += 4 + length
        (length,) = struct.unpack_from("!i", frame, position)  # content type
        position += 4 + length
        offsets.append(position)
        position += 4
        (length,) = struct.unpack_from("!i", frame, position)  # reason phrase
        position += 4 + length
        (count,) = struct.unpack_from("!i", frame, position)  # header map
        assert count == 0
        position += 4
        (length,) = struct.unpack_from("!i", frame, position)  # body
        position += 4 + length


@pytest.mark.parametrize(
    "bodies",
    [
        [{"input.1": 14}],
        [{"input.1": n} for n in range(8)],
        [{"input.1": 1}, b"", {"input.1": 1022}, b"[" * 5000, {"input.1": -1}, {"input.1": 99}],
        [b"{bad", b"\xff", {"input.1": 0}],
    ],
)
def test_status_codes_never_straddle_a_16_byte_read(service, context, bodies):
    from mms.protocol.otf_message_handler import create_predict_response

    batch_context(context, len(bodies))
    replies = service.handle([raw_request(b) for b in bodies], context)
    frame = create_predict_response(replies, context.request_ids, "Prediction success", 200, context)
    offsets = status_field_offsets(bytes(frame))
    assert len(offsets) == len(bodies)
    # Netty's reads end at multiples of 16 bytes; the 4 status bytes must not span one.
    assert all(offset % 16 == fizbuz_service.STATUS_ALIGNMENT for offset in offsets)
    assert all(offset % 16 + 4 <= 16 for offset in offsets)


def test_alignment_is_derived_from_the_frame_layout():
    # The status is the frame's one unguarded read: its 4 bytes must lie inside
    # one 16-byte read with at least one byte before them.
    safe = fizbuz_service.SAFE_STATUS_OFFSETS
    assert list(safe) == list(range(1, 13))
    assert fizbuz_service.STATUS_ALIGNMENT in safe


def test_a_failing_batch_gets_padded_500s_and_a_logged_traceback(unpacked_model, monkeypatch, caplog):
    from mms.protocol.otf_message_handler import create_predict_response

    context = load_context(unpacked_model, 16)
    service = fizbuz_service.MXNetModelService()
    service.initialize(context)
    monkeypatch.setattr(fizbuz_service, "_service", service)

    def broken_forward(numbers):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(service, "inference", broken_forward)
    batch_context(context, 16)
    replies = fizbuz_service.handle([raw_request({"input.1": n}) for n in range(16)], context)
    assert statuses(context, 16) == [500] * 16
    for reply in replies:
        body = json.loads(reply)
        assert body["code"] == 500 and "RuntimeError" in body["error"]
    assert "handler failed on a batch of 16" in caplog.text and "forward failed" in caplog.text
    # The 500 frame is laid out like a success one: no status straddles a read.
    frame = create_predict_response(replies, context.request_ids, "Prediction success", 200, context)
    offsets = status_field_offsets(bytes(frame))
    assert len(offsets) == 16 and all(offset % 16 == fizbuz_service.STATUS_ALIGNMENT for offset in offsets)
    # The service itself is unharmed: the next batch is answered.
    monkeypatch.undo()
    monkeypatch.setattr(fizbuz_service, "_service", service)
    batch_context(context, 1)
    assert json.loads(fizbuz_service.handle([raw_request({"input.1": 14})], context)[0]) == {"next_number": "FizzBuzz"}


def test_module_entry_point_loads_then_answers(unpacked_model):
    # handle(None, context) is MMS's load call; it must initialise and answer nothing.
    context = load_context(unpacked_model, 4)
    module_service = fizbuz_service._service
    fizbuz_service._service = fizbuz_service.MXNetModelService()
    try:
        assert fizbuz_service.handle(None, context) is None
        batch_context(context, 1)
        assert json.loads(fizbuz_service.handle([raw_request({"input.1": 9})], context)[0]) == {"next_number": "Buzz"}
    finally:
        fizbuz_service._service = module_service


def test_initialize_fails_loudly_without_the_model(tmp_path, unpacked_model):
    (tmp_path / "MAR-INF").mkdir()
    (tmp_path / "MAR-INF" / "MANIFEST.json").write_bytes((unpacked_model / "MAR-INF" / "MANIFEST.json").read_bytes())
    (tmp_path / "signature.json").write_bytes((unpacked_model / "signature.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="fizbuz_package-symbol.json is missing from the archive"):
        fizbuz_service.MXNetModelService().initialize(load_context(tmp_path, 1))


BLOCK_TORCH = r"""
import importlib.abc, json, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked: the archive must not need it")
sys.meta_path.insert(0, NoTorch())
model_dir = sys.argv[1]
sys.path[:0] = [model_dir]  # the handler and codec come from the archive only, as in an MMS worker
import fizbuz_service, fizbuz_codec
assert fizbuz_service.__file__.startswith(model_dir), fizbuz_service.__file__
assert fizbuz_codec.__file__.startswith(model_dir), fizbuz_codec.__file__
from fizbuz.handler_harness import batch_context, load_context, raw_request
context = load_context(model_dir, 2)
fizbuz_service.handle(None, context)
batch_context(context, 2)
print(json.dumps(fizbuz_service.handle([raw_request({"input.1": 14}), raw_request({"input.1": 4})], context)))
print("torch loaded:", "torch" in sys.modules)
"""


def test_archive_is_self_contained_without_torch(unpacked_model, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, str(unpacked_model)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    replies = json.loads(result.stdout.splitlines()[0])
    assert [json.loads(r) for r in replies] == [{"next_number": "FizzBuzz"}, {"next_number": "Buzz"}]
    assert "torch loaded: False" in result.stdout
