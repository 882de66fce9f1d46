"""Run in .venv-clients by test_v2_clients.py: the real tritonclient (HTTP with
binary tensors on and off, gRPC), over TLS with the token, against the front
door named by FIZBUZ_URL / FIZBUZ_GRPC_URL / FIZBUZ_TOKEN / FIZBUZ_CACERT.
Prints one JSON report; the test asserts on it (this script asserts nothing)."""

import json
import os

import gevent.ssl
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import fizbuz_codec as codec
from fizbuz.answers import expected_labels

MODEL = codec.MODEL_NAME
ALL = np.arange(codec.MIN_INPUT, codec.MAX_INPUT + 1, dtype=np.int64)
TOKEN = os.environ["FIZBUZ_TOKEN"]
CACERT = os.environ["FIZBUZ_CACERT"]


def http_client():
    def context():
        ssl_context = gevent.ssl.SSLContext(gevent.ssl.PROTOCOL_TLS_CLIENT)
        ssl_context.load_verify_locations(cafile=CACERT)
        return ssl_context

    return httpclient.InferenceServerClient(
        os.environ["FIZBUZ_URL"].split("://", 1)[1], ssl=True, ssl_context_factory=context
    )


def grpc_client():
    return grpcclient.InferenceServerClient(os.environ["FIZBUZ_GRPC_URL"], ssl=True, root_certificates=CACERT)


def headers(kind, token=TOKEN):
    # A fresh dict each call: tritonclient writes its own headers into it.
    return {("authorization" if kind == "grpc" else "Authorization"): f"Bearer {token}"}


def infer(
    kind,
    server,
    numbers,
    binary=True,
    outputs=("next_number", "logits"),
    model=MODEL,
    version="",
    datatype="INT64",
    token=TOKEN,
    request_id="",
):
    module = grpcclient if kind == "grpc" else httpclient
    tensor = module.InferInput("input.1", [len(numbers), 1], datatype)
    values = np.asarray(numbers).reshape(-1, 1).astype(np.dtype(datatype.lower().replace("fp", "float")))
    if kind == "grpc":
        tensor.set_data_from_numpy(values)
        asked = [module.InferRequestedOutput(name) for name in outputs]
    else:
        tensor.set_data_from_numpy(values, binary_data=binary)
        asked = [module.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return server.infer(
        model, [tensor], outputs=asked, model_version=version, headers=headers(kind, token), request_id=request_id
    )


def labels_of(result):
    return [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("next_number").ravel()]


def check_answers(kind, server, binary=True):
    """Every input one at a time, then all 1023 in one request: wrong labels
    counted; the logits' argmax must give the same label."""
    wrong_single = 0
    for n in ALL:
        result = infer(kind, server, [n], binary=binary, outputs=("next_number",))
        wrong_single += labels_of(result) != expected_labels([n])
    result = infer(kind, server, ALL, binary=binary, request_id="all-1023")
    labels = labels_of(result)
    logits = result.as_numpy("logits")
    expected = expected_labels(ALL)
    from_logits = [codec.readable(int(n) + 1, int(c)) for n, c in zip(ALL, logits.argmax(axis=1))]
    response_id = result.get_response().id if kind == "grpc" else result.get_response().get("id")
    return {
        "single_wrong": int(wrong_single),
        "single_count": len(ALL),
        "batch_wrong": sum(a != b for a, b in zip(labels, expected)) + abs(len(labels) - len(ALL)),
        "logits_shape": list(logits.shape),
        "logits_dtype": str(logits.dtype),
        "argmax_disagrees": sum(a != b for a, b in zip(from_logits, labels)),
        "id": response_id,
    }


def error_of(call):
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": error.message()}
    return {"status": "no error", "message": ""}


def check_errors(kind, server):
    cases = {
        "unknown_model": lambda: infer(kind, server, [1], model="nope"),
        "unknown_version": lambda: infer(kind, server, [1], version="7"),
        "out_of_range": lambda: infer(kind, server, [5, 6, 2000]),
        "negative": lambda: infer(kind, server, [-1]),
        "float_datatype": lambda: infer(kind, server, [1.0], datatype="FP32"),
        "too_many": lambda: infer(kind, server, np.zeros(1025, dtype=np.int64)),
        "unknown_output": lambda: infer(kind, server, [1], outputs=("nope",)),
        "no_token": lambda: infer(kind, server, [1], token=""),
        "wrong_token": lambda: infer(kind, server, [1], token="not-a-token"),
    }
    return {name: error_of(case) for name, case in cases.items()}


def check_metadata(kind, server):
    extra = {"as_json": True} if kind == "grpc" else {}
    return {
        "live": server.is_server_live(),
        "ready": server.is_server_ready(),
        "model_ready": server.is_model_ready(MODEL),
        "model_ready_v1": server.is_model_ready(MODEL, "1"),
        "server": server.get_server_metadata(headers=headers(kind), **extra),
        "model": server.get_model_metadata(MODEL, headers=headers(kind), **extra),
        "config": server.get_model_config(MODEL, headers=headers(kind), **extra),
        "metadata_unknown_model": error_of(lambda: server.get_model_metadata("nope", headers=headers(kind))),
        "metadata_no_token": error_of(lambda: server.get_model_metadata(MODEL)),
    }


def main():
    http, grpc = http_client(), grpc_client()
    report = {
        "http_binary": check_answers("http", http, binary=True),
        "http_json": check_answers("http", http, binary=False),
        "grpc": check_answers("grpc", grpc),
        "http_errors": check_errors("http", http),
        "grpc_errors": check_errors("grpc", grpc),
        "http_metadata": check_metadata("http", http),
        "grpc_metadata": check_metadata("grpc", grpc),
    }
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
