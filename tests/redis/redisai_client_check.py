"""Run by the tests with the redisai 1.3.0 client's own venv (.venv-redisai):
store the model and answer every input through the client's calls, and print
what came back as JSON for the test to check. Needs only the client and numpy:
the inputs come encoded from the test (fizbuz_codec is not in that venv).
The model is stored and deleted as the admin user, everything else runs as
the runner user; their passwords are read from the secrets folder's files."""

import json
import sys

import numpy as np
import redisai


def connect(port, secrets, user):
    with open(f"{secrets}/{user}.pass") as f:
        return redisai.Client(host="127.0.0.1", port=int(port), username=user, password=f.read().strip())


def main(port, model_path, inputs_path, secrets):
    admin = connect(port, secrets, "admin")
    client = connect(port, secrets, "runner")
    with open(model_path, "rb") as f:
        admin.modelstore("fizbuz", "TORCH", "CPU", f.read(), tag="book")
    with open(inputs_path) as f:
        inputs = json.load(f)
    logits = []
    for bits in inputs:
        client.tensorset("a", np.array([bits], dtype=np.float32))
        client.modelexecute("fizbuz", inputs=["a"], outputs=["out"])
        logits.append(client.tensorget("out").reshape(-1).tolist())
    # The other shapes of the client's answers.
    client.tensorset("v", [1.5, 2.5], shape=(2,), dtype="float")
    values = client.tensorget("v", as_numpy=False)
    meta = admin.modelget("fizbuz", meta_only=True)
    info = client.infoget("fizbuz")
    client.modelrun("fizbuz", "a", "out0x")  # the deprecated 0.x call
    deleted = admin.modeldel("fizbuz")
    print(
        json.dumps(
            {
                "logits": logits,
                "values": values,
                "meta": meta,
                "info": info,
                "modelrun": client.tensorget("out0x").reshape(-1).tolist(),
                "deleted": deleted,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
