"""Run by tests/containers with .venv-clients' Python (tritonclient 2.73 and its
own protobuf and numpy): the stack's front door through tritonclient.grpc, TLS
with the stack's certificate, the token in the `authorization` metadata.

  triton_grpc_call.py HOST:PORT CAFILE TOKEN COUNT

Prints one JSON object: live, ready, the id echoed, and for the numbers
0..COUNT-1 in one ModelInfer call the labels, the logits' shape and argmax."""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient

MODEL, INPUT, LABELS, LOGITS = "fizbuz_package", "input.1", "next_number", "logits"


def main(url, cafile, token, count):
    client = grpcclient.InferenceServerClient(url, ssl=True, root_certificates=cafile)

    def metadata():
        # gRPC metadata keys are lower case; tritonclient adds to the dict it
        # is given, so each call gets a fresh one.
        return {"authorization": f"Bearer {token}"}

    numbers = np.arange(count, dtype=np.int64).reshape(count, 1)
    tensor = grpcclient.InferInput(INPUT, list(numbers.shape), "INT64")
    tensor.set_data_from_numpy(numbers)
    wanted = [grpcclient.InferRequestedOutput(LABELS), grpcclient.InferRequestedOutput(LOGITS)]
    result = client.infer(MODEL, [tensor], outputs=wanted, request_id="stack-grpc", headers=metadata())
    logits = result.as_numpy(LOGITS)
    reply = result.get_response()
    print(
        json.dumps(
            {
                "live": client.is_server_live(headers=metadata()),
                "ready": client.is_model_ready(MODEL, headers=metadata()),
                "id": reply.id,
                "model_name": reply.model_name,
                "labels": [label.decode() for label in result.as_numpy(LABELS).ravel()],
                "logits_shape": list(logits.shape),
                "argmax": logits.argmax(axis=1).tolist(),
            }
        )
    )
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
