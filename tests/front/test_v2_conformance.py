"""Conformance with the Open Inference Protocol v2 REST spec (kserve/open-inference-protocol,
specification/protocol/inference_rest.md) and Triton's binary tensor extension
(docs/protocol/extension_binary_data.md), written from the spec with a plain
HTTPS client: paths, methods, status codes, JSON shapes, `id`, versions, the
binary layout both ways, and the front door's rules (token, body cap) on v2.
"""

import gzip
import http.client
import json
import struct

import numpy as np
import pytest

from fizbuz.answers import expected_labels
from fizbuz.contract import MAX_INPUT
from serving.front import client

pytestmark = pytest.mark.e2e
MODEL = "/v2/models/fizbuz_package"


def raw(fleet, method, path, body=None, headers=None, token="default"):
    """(status, lower-case headers, body bytes): binary replies stay bytes."""
    connection = http.client.HTTPSConnection(
        fleet.address, fleet.port, timeout=30, context=client.tls_context(fleet.cafile)
    )
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {fleet.token if token == 'default' else token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def infer_body(numbers, **extra):
    return {"inputs": [{"name": "input.1", "datatype": "INT64", "shape": [len(numbers), 1], "data": numbers}], **extra}


@pytest.fixture(scope="module")
def door(fleet):
    return fleet.healthy()


# ------------------------------------------------------------------ health and metadata


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", f"{MODEL}/ready", f"{MODEL}/versions/1/ready"])
def test_health_is_200_without_a_token(door, path):
    status, headers, body = raw(door, "GET", path, token=None)
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) in ({"live": True}, {"ready": True})


def test_server_metadata(door):
    status, _, body = raw(door, "GET", "/v2")
    document = json.loads(body)
    assert status == 200 and set(document) == {"name", "version", "extensions"}
    assert document["name"] == "fizbuz-serve" and isinstance(document["version"], str)
    assert set(document["extensions"]) == {"binary_tensor_data", "model_configuration"}


@pytest.mark.parametrize("path", [MODEL, f"{MODEL}/versions/1"])
def test_model_metadata(door, path):
    status, _, body = raw(door, "GET", path)
    document = json.loads(body)
    assert status == 200 and document["name"] == "fizbuz_package" and document["versions"] == ["1"]
    assert document["platform"]
    assert document["inputs"] == [{"name": "input.1", "datatype": "INT64", "shape": [-1, 1]}]
    assert document["outputs"] == [
        {"name": "next_number", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "logits", "datatype": "FP32", "shape": [-1, 4]},
    ]


def test_model_config_has_max_batch_size(door):
    status, _, body = raw(door, "GET", f"{MODEL}/config")
    document = json.loads(body)
    assert status == 200 and document["max_batch_size"] == 1024
    assert document["input"][0]["dims"] == [1]  # Triton's dims leave the batch dimension out


@pytest.mark.parametrize(
    "path,words",
    [
        ("/v2/models/nope", "unknown model 'nope'"),
        ("/v2/models/nope/ready", "unknown model 'nope'"),
        (f"{MODEL}/versions/2", "unknown version '2'"),
        (f"{MODEL}/versions/2/ready", "unknown version '2'"),
        ("/v2/models/nope/config", "unknown model"),
        ("/v2/repository/index", "not found"),
        ("/v2/models/fizbuz_package/stats", "not found"),
    ],
)
def test_unknown_model_version_or_path_is_404_with_an_error(door, path, words):
    status, _, body = raw(door, "GET", path)
    assert status == 404 and words in json.loads(body)["error"]


@pytest.mark.parametrize(
    "method,path,allowed",
    [("POST", "/v2", "GET, HEAD"), ("DELETE", MODEL, "GET, HEAD"), ("GET", f"{MODEL}/infer", "POST")],
)
def test_wrong_method_is_405_with_allow(door, method, path, allowed):
    status, headers, body = raw(door, method, path)
    assert status == 405 and headers["allow"] == allowed and "error" in json.loads(body)


@pytest.mark.parametrize("path", ["/v2", MODEL, f"{MODEL}/config"])
def test_metadata_needs_the_token(door, path):
    status, headers, body = raw(door, "GET", path, token=None)
    assert status == 401 and "bearer token" in json.loads(body)["error"]
    assert headers["www-authenticate"].startswith("Bearer")


# ------------------------------------------------------------------ inference, JSON


@pytest.mark.parametrize("path", [f"{MODEL}/infer", f"{MODEL}/versions/1/infer"])
def test_infer_json_every_input_in_one_request(door, path):
    # priority is tolerated; timeout (µs, Triton's) is honoured as a deadline (docs/overload.md): a generous one
    numbers = list(range(0, MAX_INPUT + 1))
    status, headers, body = raw(
        door, "POST", path, infer_body(numbers, id="req-42", parameters={"priority": 3, "timeout": 30_000_000})
    )
    document = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in headers
    assert document["model_name"] == "fizbuz_package" and document["model_version"] == "1"
    assert document["id"] == "req-42"
    labels, logits = document["outputs"]
    assert labels == {
        "name": "next_number",
        "datatype": "BYTES",
        "shape": [len(numbers), 1],
        "data": expected_labels(numbers),
    }
    assert logits["name"] == "logits" and logits["datatype"] == "FP32" and logits["shape"] == [len(numbers), 4]
    assert len(logits["data"]) == 4 * len(numbers)  # flattened, row-major


def test_infer_without_id_has_no_id_and_a_1d_input_gives_a_1d_label(door):
    body = {
        "inputs": [{"name": "input.1", "datatype": "INT32", "shape": [2], "data": [2, 4]}],
        "outputs": [{"name": "next_number"}],
    }
    status, _, reply = raw(door, "POST", f"{MODEL}/infer", body)
    document = json.loads(reply)
    assert status == 200 and "id" not in document
    assert document["outputs"] == [{"name": "next_number", "datatype": "BYTES", "shape": [2], "data": ["Fizz", "Buzz"]}]


@pytest.mark.parametrize(
    "body,status,words",
    [
        (infer_body([1, 1023]), 400, "element 1"),
        ({"inputs": [{"name": "input.1", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}, 400, "datatype 'FP32'"),
        ({"inputs": [{"name": "input.1", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]}]}, 400, "shape"),
        (infer_body([0] * 1025), 413, "at most 1024"),
        (b"{not json", 400, "not valid JSON"),
    ],
)
def test_infer_errors(door, body, status, words):
    got, headers, reply = raw(door, "POST", f"{MODEL}/infer", body)
    assert got == status and headers["content-type"] == "application/json"
    assert words in json.loads(reply)["error"]


def test_infer_unknown_model_and_version(door):
    for path, words in (("/v2/models/nope/infer", "unknown model"), (f"{MODEL}/versions/9/infer", "unknown version")):
        status, _, reply = raw(door, "POST", path, infer_body([1]))
        assert status == 404 and words in json.loads(reply)["error"]


def test_infer_needs_the_token_and_a_wrong_case_token_is_not_it(door):
    assert raw(door, "POST", f"{MODEL}/infer", infer_body([1]), token=None)[0] == 401
    assert raw(door, "POST", f"{MODEL}/infer", infer_body([1]), token="nope")[0] == 401


def test_body_over_the_v2_cap_is_413_json(door):
    status, _, reply = raw(
        door, "POST", f"{MODEL}/infer", b"{" + b" " * 70_000 + b"}", {"Content-Type": "application/json"}
    )
    assert status == 413 and "limit 64k" in json.loads(reply)["error"]


def test_gzip_request_body(door):
    body = gzip.compress(json.dumps(infer_body([14], outputs=[{"name": "next_number"}])).encode())
    status, _, reply = raw(
        door, "POST", f"{MODEL}/infer", body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert status == 200 and json.loads(reply)["outputs"][0]["data"] == ["FizzBuzz"]


# ------------------------------------------------------------------ the binary extension


def binary_request(numbers, outputs=None, binary_output=True):
    raw_input = np.asarray(numbers, dtype="<i8").tobytes()
    head = {
        "inputs": [
            {
                "name": "input.1",
                "datatype": "INT64",
                "shape": [len(numbers), 1],
                "parameters": {"binary_data_size": len(raw_input)},
            }
        ]
    }
    if outputs:
        head["outputs"] = outputs
    else:
        head["parameters"] = {"binary_data_output": binary_output}
    head_bytes = json.dumps(head).encode()
    return head_bytes + raw_input, {
        "Inference-Header-Content-Length": str(len(head_bytes)),
        "Content-Type": "application/octet-stream",
    }


def test_binary_both_ways(door):
    numbers = list(range(0, MAX_INPUT + 1))
    body, headers = binary_request(numbers)
    status, reply_headers, reply = raw(door, "POST", f"{MODEL}/infer", body, headers)
    assert status == 200
    length = int(reply_headers["inference-header-content-length"])
    head = json.loads(reply[:length])
    blobs, offset = {}, length
    for output in head["outputs"]:
        assert "data" not in output
        size = output["parameters"]["binary_data_size"]
        blobs[output["name"]] = reply[offset : offset + size]
        offset += size
    assert offset == len(reply)
    labels, position = [], 0
    blob = blobs["next_number"]
    while position < len(blob):  # BYTES: a 4-byte little-endian length, then the bytes
        (size,) = struct.unpack_from("<I", blob, position)
        labels.append(blob[position + 4 : position + 4 + size].decode())
        position += 4 + size
    assert labels == expected_labels(numbers)
    logits = np.frombuffer(blobs["logits"], dtype="<f4").reshape(-1, 4)
    assert logits.shape == (len(numbers), 4)


def test_binary_input_json_output_per_output_choice(door):
    body, headers = binary_request(
        [2, 4],
        outputs=[
            {"name": "next_number", "parameters": {"binary_data": False}},
            {"name": "logits", "parameters": {"binary_data": True}},
        ],
    )
    status, reply_headers, reply = raw(door, "POST", f"{MODEL}/infer", body, headers)
    length = int(reply_headers["inference-header-content-length"])
    head = json.loads(reply[:length])
    assert status == 200 and head["outputs"][0]["data"] == ["Fizz", "Buzz"]
    assert len(reply) - length == head["outputs"][1]["parameters"]["binary_data_size"] == 2 * 4 * 4


def test_binary_input_without_binary_output_is_plain_json(door):
    body, headers = binary_request([14], binary_output=False)
    status, reply_headers, reply = raw(door, "POST", f"{MODEL}/infer", body, headers)
    assert status == 200 and "inference-header-content-length" not in reply_headers
    assert json.loads(reply)["outputs"][0]["data"] == ["FizzBuzz"]


@pytest.mark.parametrize(
    "length,words", [("xyz", "Inference-Header-Content-Length"), ("100000", "Inference-Header-Content-Length")]
)
def test_bad_header_length_is_400(door, length, words):
    body, headers = binary_request([1])
    headers["Inference-Header-Content-Length"] = length
    status, _, reply = raw(door, "POST", f"{MODEL}/infer", body, headers)
    assert status == 400 and words in json.loads(reply)["error"]


def test_the_card_path_is_unchanged_beside_v2(door):
    status, _, reply = raw(door, "POST", "/predictions/fizbuz_package", {"input.1": 14})
    assert status == 200 and json.loads(reply) == {"next_number": "FizzBuzz"}


def test_a_hosts_never_see_a_forged_call_header_on_the_card_path(door):
    """X-Fizbuz-* headers from a client are dropped: the card's request stays the card's."""
    status, _, reply = raw(
        door,
        "POST",
        "/predictions/fizbuz_package",
        {"input.1": 14},
        {"X-Fizbuz-Protocol": "grpc", "X-Fizbuz-Call": "ModelConfig"},
    )
    assert status == 200 and json.loads(reply) == {"next_number": "FizzBuzz"}
