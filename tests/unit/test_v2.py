"""fizbuz_v2 (the Open Inference Protocol's parsing and replies) and the handler
answering v2 and gRPC calls beside the card's requests, on the real model."""

import gzip
import json
import struct

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mms.context import RequestProcessor

import fizbuz_v2 as v2
from fizbuz.handler_harness import batch_context, raw_request, statuses
from fizbuz_codec import MAX_INPUT, true_label

ALL = list(range(0, MAX_INPUT + 1))


def rest_body(numbers, datatype="INT64", shape=None, **extra):
    tensor = {"name": "input.1", "datatype": datatype, "shape": shape or [len(numbers), 1], "data": numbers}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def binary_body(numbers, dtype="<i8", datatype="INT64", outputs_binary=True):
    raw = np.asarray(numbers, dtype=dtype).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input.1",
                    "datatype": datatype,
                    "shape": [len(numbers), 1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": outputs_binary},
        }
    ).encode()
    return head + raw, str(len(head))


# ------------------------------------------------------------------ parsing


def test_rest_json_and_nested_data_and_id():
    request = v2.parse_rest(rest_body([[1], [2], [3]], id="abc", parameters={"priority": 1, "timeout": 9}))
    assert request.numbers.tolist() == [1, 2, 3] and request.id == "abc" and request.has_id
    assert [name for name, _ in request.outputs] == ["next_number", "logits"]


@pytest.mark.parametrize(
    "datatype,dtype",
    [
        ("INT8", "<i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
    ],
)
def test_rest_binary_every_integer_type(datatype, dtype):
    numbers = [0, 14, 100] if datatype in ("INT8",) else [0, 14, 1022]
    body, length = binary_body(numbers, dtype, datatype)
    assert v2.parse_rest(body, length).numbers.tolist() == numbers


@pytest.mark.parametrize(
    "body,words,status",
    [
        (b"", "empty body", 400),
        (b"[1]", "JSON object", 400),
        (rest_body([1], datatype="FP32"), "datatype 'FP32'", 400),
        (rest_body([1, 2], shape=[2, 2]), "expected [N, 1] or [N]", 400),
        (rest_body([], shape=[0, 1]), "at least 1", 400),
        (rest_body([1] * 1025), "at most 1024", 413),
        (rest_body([1, 2000, 3]), "element 1: 2000 is out of range", 400),
        (rest_body([1, True]), "element 1: expected an integer", 400),
        (rest_body([1, 2.0]), "element 1: expected an integer", 400),
        (rest_body([1], shape=[2, 1]), '1 values in "data"', 400),
        (json.dumps({"inputs": []}).encode(), "list of one tensor", 400),
        (
            json.dumps({"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}]}).encode(),
            "unknown input 'x'",
            400,
        ),
        (rest_body([1], outputs=[{"name": "nope"}]), "unknown output 'nope'", 400),
        (rest_body([1], outputs=[{"name": "logits"}, {"name": "logits"}]), "asked for twice", 400),
        (rest_body([1], outputs=[{"name": "next_number", "parameters": {"classification": 2}}]), "classification", 400),
        (rest_body([1], id=5), '"id" must be a string', 400),
    ],
)
def test_rest_errors_name_what_was_wrong(body, words, status):
    with pytest.raises(v2.V2Error) as caught:
        v2.parse_rest(body)
    assert words in str(caught.value) and caught.value.status == status


@pytest.mark.parametrize(
    "length,words",
    [("abc", "Inference-Header-Content-Length"), ("99999", "at most"), ("-1", "Inference-Header-Content-Length")],
)
def test_binary_header_length_checked(length, words):
    body, _ = binary_body([1])
    with pytest.raises(v2.V2Error, match=words):
        v2.parse_rest(body, length)


def test_binary_size_must_match_and_cover_the_body():
    body, length = binary_body([1, 2])
    with pytest.raises(v2.V2Error, match="bytes after the binary tensors"):
        v2.parse_rest(body + b"xx", length)
    with pytest.raises(v2.V2Error, match="16 bytes of data, expected 8"):
        v2.parse_rest(body.replace(b'"shape": [2, 1]', b'"shape": [1, 1]'), str(int(length)))


def test_gzip_and_deflate_bodies_and_a_bomb():
    body = rest_body([3, 5])
    assert v2.parse_rest(v2.inflate(gzip.compress(body), "gzip")).numbers.tolist() == [3, 5]
    import zlib

    assert v2.parse_rest(v2.inflate(zlib.compress(body), "deflate")).numbers.tolist() == [3, 5]
    with pytest.raises(v2.V2Error) as caught:
        v2.inflate(gzip.compress(b" " * (2 << 20)), "gzip")
    assert caught.value.status == 413
    with pytest.raises(v2.V2Error, match="not supported"):
        v2.inflate(body, "br")


def test_check_model_and_version():
    v2.check_model("fizbuz_package", "")
    v2.check_model("fizbuz_package", "1")
    for name, version in (("other", ""), ("fizbuz_package", "2")):
        with pytest.raises(v2.V2Error) as caught:
            v2.check_model(name, version)
        assert caught.value.status == 404 and caught.value.grpc_code == v2.GRPC_NOT_FOUND


def grpc_infer_body(numbers, raw=True, **fields):
    message = v2.MESSAGES["ModelInferRequest"](model_name="fizbuz_package", id="g", **fields)
    tensor = message.inputs.add(name="input.1", datatype="INT64", shape=[len(numbers), 1])
    if raw:
        message.raw_input_contents.append(np.asarray(numbers, dtype="<i8").tobytes())
    else:
        tensor.contents.int64_contents.extend(numbers)
    return v2.grpc_frame(message.SerializeToString())


@pytest.mark.parametrize("raw", [True, False])
def test_grpc_request_raw_and_typed_contents(raw):
    request = v2.parse_grpc(grpc_infer_body([4, 5, 6], raw=raw))
    assert request.numbers.tolist() == [4, 5, 6] and request.id == "g"


@pytest.mark.parametrize(
    "body,words",
    [
        (b"\x00\x00", "truncated"),
        (b"\x01\x00\x00\x00\x00", "compressed"),
        (b"\x00\x00\x00\x00\x09abc", "says 9 bytes"),
        (v2.grpc_frame(b"\xff\xff\xff"), "does not decode"),
    ],
)
def test_grpc_frame_errors(body, words):
    with pytest.raises(v2.V2Error, match=words):
        v2.parse_grpc(body)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=5)))
@example(b"{}", "\u00b2")  # '²': str.isdigit() says yes, int() refuses it (found by this test)
@example(b"{}", "\u0663")  # an Arabic-Indic 3: isdigit() and int() both take it
def test_any_bytes_are_answered_or_refused_with_a_v2_error(body, length):
    for parse in (lambda: v2.parse_rest(body, length), lambda: v2.parse_grpc(body)):
        try:
            request = parse()
        except v2.V2Error:
            continue
        assert request.numbers.min() >= 0 and request.numbers.max() <= MAX_INPUT


def test_rest_reply_binary_layout():
    request = v2.parse_rest(*binary_body([2, 14]))
    payload, length = v2.rest_reply(request, ["Fizz", "FizzBuzz"], np.ones((2, 4), np.float32))
    head = json.loads(payload[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    labels_blob = payload[length : length + sizes[0]]
    assert labels_blob == struct.pack("<I", 4) + b"Fizz" + struct.pack("<I", 8) + b"FizzBuzz"
    assert np.frombuffer(payload[length + sizes[0] :], "<f4").tolist() == [1.0] * 8
    assert len(payload) == length + sum(sizes)


def test_envelope_round_trip():
    body = v2.envelope(b"payload", 404, "application/json", header_length=12, grpc_status=5, grpc_message="a b%")
    assert v2.open_envelope(body + b"   \n") == (404, "application/json", 12, b"payload", 5, "a b%")
    with pytest.raises(ValueError):
        v2.open_envelope(b'{"next_number": "1"}')


# ------------------------------------------------------------------ the handler

BATCH_SIZE = 8  # the handler's registered batch size (tests/unit/conftest.py builds it)


def handle(service, context, requests):
    """requests: (headers, body) pairs, as the front door's calls arrive."""
    batch_context(context, len(requests))
    context.request_processor = [RequestProcessor(headers) for headers, _ in requests]
    replies = service.handle([raw_request(body) for _, body in requests], context)
    assert len(replies) == len(requests)
    return replies, statuses(context, len(requests))


def test_a_batch_mixing_the_card_v2_and_grpc_answers_each_in_its_own_form(service, context):
    v2_headers, v2_body = v2.host_call(ALL)
    grpc_headers = {v2.PROTOCOL_HEADER: "grpc", v2.CALL_HEADER: "ModelInfer"}
    replies, codes = handle(
        service,
        context,
        [
            ({}, {"input.1": 14}),
            (v2_headers, v2_body),
            (grpc_headers, grpc_infer_body([1, 2])),
            ({}, {"input.1": 2000}),
            (v2_headers, rest_body([1, 5000])),
            ({v2.PROTOCOL_HEADER: "grpc", v2.CALL_HEADER: "ModelInfer"}, grpc_infer_body([9999])),
        ],
    )
    assert json.loads(replies[0]) == {"next_number": "FizzBuzz"}
    assert v2.labels_of_reply(replies[1]) == [true_label(n + 1) for n in ALL]
    status, kind, _, payload, grpc_status, _ = v2.open_envelope(replies[2])
    answer = v2.MESSAGES["ModelInferResponse"].FromString(v2.grpc_unframe(payload))
    assert (status, kind, grpc_status, answer.id) == (200, "application/grpc", 0, "g")
    assert [o.name for o in answer.outputs] == ["next_number", "logits"]
    assert answer.raw_output_contents[0] == struct.pack("<I", 1) + b"2" + struct.pack("<I", 4) + b"Fizz"
    assert "between 0 and 1022" in json.loads(replies[3])["error"]
    status, _, _, payload, _, _ = v2.open_envelope(replies[4])
    assert status == 400 and "element 1" in json.loads(payload)["error"]
    status, _, _, payload, grpc_status, message = v2.open_envelope(replies[5])
    assert (status, payload, grpc_status) == (200, b"", v2.GRPC_INVALID_ARGUMENT) and "element 0" in message
    assert codes == [200, 200, 200, 400, 400, 200]  # gRPC errors travel in the envelope


def test_more_numbers_than_the_largest_executor_run_in_chunks(service, context):
    headers, body = v2.host_call(ALL)
    replies, _ = handle(service, context, [(headers, body)] * 3)  # 3069 rows: chunks of 1024
    assert all(v2.labels_of_reply(r) == [true_label(n + 1) for n in ALL] for r in replies)


@pytest.mark.parametrize("call", ["ServerMetadata", "ModelMetadata", "ModelConfig", "ServerReady", "ModelReady"])
def test_rest_calls_without_inference(service, context, call):
    headers = {v2.PROTOCOL_HEADER: "v2", v2.CALL_HEADER: call, v2.MODEL_HEADER: "fizbuz_package"}
    replies, _ = handle(service, context, [(headers, b"")])
    status, kind, _, payload, _, _ = v2.open_envelope(replies[0])
    document = json.loads(payload)
    assert status == 200 and kind == "application/json"
    assert document.get("ready", True) is True
    if call == "ModelConfig":
        assert document["max_batch_size"] == v2.MAX_NUMBERS


def test_unknown_call_and_protocol_are_refused(service, context):
    replies, codes = handle(
        service,
        context,
        [
            ({v2.PROTOCOL_HEADER: "v2", v2.CALL_HEADER: "Explode"}, b""),
            ({v2.PROTOCOL_HEADER: "v9"}, b""),
        ],
    )
    assert [v2.open_envelope(r)[0] for r in replies] == [404, 400] and codes == [404, 400]
