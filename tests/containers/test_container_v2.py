"""The Open Inference Protocol v2 through the stack's front door, as the fleet
serves it: REST with JSON and with binary tensors (built by hand here), gRPC
through tritonclient (the standard client, in .venv-clients), each with TLS and
the token, all 1023 inputs in one request."""

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from fizbuz import answers
from fizbuz.contract import MAX_INPUT, MIN_INPUT, ROOT
from fizbuz_codec import CLASS_LABELS, readable

pytestmark = [pytest.mark.containers, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
MODEL = "fizbuz_package"
INFER_PATH = f"/v2/models/{MODEL}/infer"
NUMBERS = list(range(MIN_INPUT, MAX_INPUT + 1))
EXPECTED = answers.expected_labels(NUMBERS)


def labels_from_logits(numbers, logits):
    return [readable(n + 1, int(c)) for n, c in zip(numbers, np.asarray(logits).argmax(axis=1))]


def post(stack, body, headers):
    return requests.post(
        f"https://127.0.0.1:{stack.port}{INFER_PATH}",
        data=body,
        timeout=30,
        verify=str(stack.cafile),
        headers={"Authorization": f"Bearer {stack.token}", **headers},
    )


def test_env_prints_the_grpc_address_beside_the_url(running_stack):
    result = subprocess.run(
        [str(ROOT / "serving/containers/containers.sh"), "--dir", str(running_stack.stack.dir), "env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    assert lines["FIZBUZ_GRPC_URL"] == f"127.0.0.1:{running_stack.port}"
    assert lines["FIZBUZ_URL"] == f"https://{lines['FIZBUZ_GRPC_URL']}"


def test_every_input_in_one_v2_json_request(running_stack):
    document = {
        "id": "stack-json",
        "parameters": {"priority": 1},
        "inputs": [{"name": "input.1", "datatype": "INT64", "shape": [len(NUMBERS), 1], "data": NUMBERS}],
    }
    reply = post(running_stack, json.dumps(document), {"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text[:300]
    answer = reply.json()
    assert (answer["model_name"], answer["id"]) == (MODEL, "stack-json")
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert outputs["next_number"]["shape"] == [1023, 1] and outputs["next_number"]["datatype"] == "BYTES"
    assert outputs["next_number"]["data"] == EXPECTED
    assert outputs["logits"]["shape"] == [1023, len(CLASS_LABELS)]
    logits = np.array(outputs["logits"]["data"], dtype=np.float32).reshape(1023, len(CLASS_LABELS))
    assert labels_from_logits(NUMBERS, logits) == EXPECTED


def _bytes_elements(blob):
    """A BYTES tensor of the binary extension: a 4-byte little-endian length before each element."""
    items, offset = [], 0
    while offset < len(blob):
        (size,) = struct.unpack_from("<I", blob, offset)
        items.append(blob[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return items


def test_every_input_in_one_v2_binary_request(running_stack):
    raw = np.array(NUMBERS, dtype="<i8").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input.1",
                    "datatype": "INT64",
                    "shape": [len(NUMBERS)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    reply = post(
        running_stack,
        head + raw,
        {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))},
    )
    assert reply.status_code == 200, reply.content[:300]
    split = int(reply.headers["Inference-Header-Content-Length"])
    answer = json.loads(reply.content[:split])
    blobs, offset = {}, split
    for output in answer["outputs"]:
        size = output["parameters"]["binary_data_size"]
        blobs[output["name"]] = reply.content[offset : offset + size]
        offset += size
    assert offset == len(reply.content)
    shapes = {output["name"]: output["shape"] for output in answer["outputs"]}
    assert shapes == {"next_number": [1023], "logits": [1023, len(CLASS_LABELS)]}
    assert _bytes_elements(blobs["next_number"]) == EXPECTED
    logits = np.frombuffer(blobs["logits"], dtype="<f4").reshape(1023, len(CLASS_LABELS))
    assert labels_from_logits(NUMBERS, logits) == EXPECTED


@pytest.fixture(scope="session")
def clients_python():
    """.venv-clients' Python: tritonclient[http,grpc] at its pins (clients/setup.sh, a no-op when up to date)."""
    subprocess.run([str(ROOT / "clients/setup.sh")], check=True, timeout=900, capture_output=True)
    return ROOT / ".venv-clients/bin/python"


def test_every_input_in_one_grpc_call_through_tritonclient(running_stack, clients_python):
    result = subprocess.run(
        [
            str(clients_python),
            str(HERE / "triton_grpc_call.py"),
            f"127.0.0.1:{running_stack.port}",
            str(running_stack.cafile),
            running_stack.token,
            str(len(NUMBERS)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert (answer["live"], answer["ready"]) == (True, True)
    assert (answer["model_name"], answer["id"]) == (MODEL, "stack-grpc")
    assert answer["labels"] == EXPECTED
    assert answer["logits_shape"] == [1023, len(CLASS_LABELS)]
    assert [readable(n + 1, c) for n, c in zip(NUMBERS, answer["argmax"])] == EXPECTED


def test_grpc_without_the_token_is_unauthenticated(running_stack, clients_python):
    result = subprocess.run(
        [
            str(clients_python),
            str(HERE / "triton_grpc_call.py"),
            f"127.0.0.1:{running_stack.port}",
            str(running_stack.cafile),
            "not-a-token",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "UNAUTHENTICATED" in result.stderr


def test_mms_in_the_image_runs_with_the_repos_config(running_stack):
    """Request and reply caps (v2 requests carry up to 1024 numbers) as in
    serving/mms/config.properties: the image renders its run folder's config from it."""
    wanted = {
        line.split("=", 1)[0]: line
        for line in (ROOT / "serving/mms/config.properties").read_text().splitlines()
        if line.startswith(("max_request_size", "max_response_size", "decode_input_request"))
    }
    container = running_stack.mms_containers()[0]
    text = running_stack.docker.run(
        "exec",
        container,
        "python3",
        "-c",
        "import os; from serving.mms.process import RunFolder; "
        "print(RunFolder(os.environ['FIZBUZ_RUN_DIR']).config.read_text())",
    )
    found = {line.split("=", 1)[0]: line for line in text.splitlines() if line.split("=", 1)[0] in wanted}
    assert found == wanted and len(wanted) == 3
