"""Per-request deadlines (issue 23): a request whose budget, counted from the
front door's stamp, is spent when its batch comes up is answered 503 (gRPC:
DEADLINE_EXCEEDED) and not run; the others of the batch are answered as usual."""

import json
import time

import pytest
from mms.context import RequestProcessor

import fizbuz_service as service_module
import fizbuz_v2 as v2
from fizbuz.handler_harness import batch_context, raw_request, statuses
from fizbuz_codec import InvalidInput

BATCH_SIZE = 8
RECEIVED, TIMEOUT = service_module.RECEIVED_HEADER, service_module.TIMEOUT_HEADER


def stamped(seconds_ago, **headers):
    return {RECEIVED: f"{time.time() - seconds_ago:.3f}", **headers}


def handle(service, context, requests):
    batch_context(context, len(requests))
    context.request_processor = [RequestProcessor(headers) for headers, _ in requests]
    replies = service.handle([raw_request(body) for _, body in requests], context)
    return replies, statuses(context, len(requests))


def test_a_spent_budget_is_refused_without_running_its_neighbours_are_answered(service, context, monkeypatch):
    rows = []
    real = service.inference
    monkeypatch.setattr(
        service,
        "inference",
        lambda requests: rows.append(sum(len(r.numbers) for r in requests if r.numbers is not None)) or real(requests),
    )
    v2_headers, v2_body = v2.host_call([1, 2])
    grpc = {v2.PROTOCOL_HEADER: "grpc", v2.CALL_HEADER: "ModelInfer"}
    replies, codes = handle(
        service,
        context,
        [
            (stamped(0.5, **{TIMEOUT: "100"}), {"input.1": 14}),  # spent
            (stamped(0.5, **{TIMEOUT: "5000"}), {"input.1": 14}),  # in time
            ({TIMEOUT: "1"}, {"input.1": 14}),  # no stamp: nothing to count from
            ({**v2_headers, **stamped(0.5, **{TIMEOUT: "100"})}, v2_body),  # spent (v2)
            ({**grpc, **stamped(0.5, **{"Grpc-Timeout": "100m"})}, grpc_body()),  # spent (gRPC's own header)
        ],
    )
    assert codes == [503, 200, 200, 503, 200]
    assert json.loads(replies[0])["code"] == 503 and "deadline passed" in json.loads(replies[0])["error"]
    assert json.loads(replies[1]) == json.loads(replies[2]) == {"next_number": "FizzBuzz"}
    status, _, _, payload, _, _ = v2.open_envelope(replies[3])
    assert status == 503 and "not run" in json.loads(payload)["error"]
    status, _, _, _, grpc_status, message = v2.open_envelope(replies[4])
    assert (status, grpc_status) == (200, v2.GRPC_DEADLINE_EXCEEDED) and "deadline" in message
    assert rows == [2]  # only the two requests in time reached the model


def grpc_body():
    message = v2.MESSAGES["ModelInferRequest"](model_name=v2.MODEL_NAME)
    message.inputs.add(name="input.1", datatype="INT64", shape=[1, 1]).contents.int64_contents.append(3)
    return v2.grpc_frame(message.SerializeToString())


def test_v2_timeout_parameter_in_microseconds():
    body = json.dumps(
        {
            "inputs": [{"name": "input.1", "datatype": "INT64", "shape": [1, 1], "data": [3]}],
            "parameters": {"timeout": 100000},
        }
    ).encode()
    request = v2.parse_rest(body)
    assert request.timeout_us == 100000
    service_module.check_deadline({RECEIVED: "100.000"}, request.timeout_us, now=100.05)  # 50 of 100 ms
    with pytest.raises(service_module.DeadlinePassed):
        service_module.check_deadline({RECEIVED: "100.000"}, request.timeout_us, now=100.2)


@pytest.mark.parametrize("value", ["-1", "abc", "0", str(10**9)])
def test_a_bad_timeout_header_is_a_clear_400(value):
    with pytest.raises(InvalidInput, match="Timeout-Ms must be"):
        service_module.check_deadline({RECEIVED: "1.0", TIMEOUT: value})


@pytest.mark.parametrize("value", [-5, "soon", 1.5, True])
def test_a_bad_timeout_parameter_is_a_clear_400(value):
    body = json.dumps(
        {
            "inputs": [{"name": "input.1", "datatype": "INT64", "shape": [1, 1], "data": [3]}],
            "parameters": {"timeout": value},
        }
    ).encode()
    with pytest.raises(v2.V2Error, match="timeout"):
        v2.parse_rest(body)
