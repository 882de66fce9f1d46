"""Run by the tests with the redisai 1.3.0 client's own venv (.venv-redisai):
store the model and answer every input through the client's calls, and print
what came back as JSON for the test to check. Needs only the client and numpy."""

import json
import sys

import numpy as np
import redisai


def bits(number):
    return [(number >> shift) & 1 for shift in range(9, -1, -1)]


def main(port, model_path):
    client = redisai.Client(host="127.0.0.1", port=int(port))
    with open(model_path, "rb") as f:
        client.modelstore("fizbuz", "TORCH", "CPU", f.read(), tag="book")
    logits = []
    for n in range(0, 1023):
        client.tensorset("a", np.array([bits(n + 1)], dtype=np.float32))
        client.modelexecute("fizbuz", inputs=["a"], outputs=["out"])
        logits.append(client.tensorget("out").reshape(-1).tolist())
    # The other shapes of the client's answers.
    client.tensorset("v", [1.5, 2.5], shape=(2,), dtype="float")
    values = client.tensorget("v", as_numpy=False)
    meta = client.modelget("fizbuz", meta_only=True)
    info = client.infoget("fizbuz")
    client.modelrun("fizbuz", "a", "out0x")  # the deprecated 0.x call
    deleted = client.modeldel("fizbuz")
    print(json.dumps({"logits": logits, "values": values, "meta": meta, "info": info,
                      "modelrun": client.tensorget("out0x").reshape(-1).tolist(), "deleted": deleted}))


if __name__ == "__main__":
    main(*sys.argv[1:])
