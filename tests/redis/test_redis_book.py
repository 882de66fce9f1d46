"""The book's client code, unchanged but for the connections (the admin user
stores the model, the runner user answers), against the module in a real
redis-server: every input 0..1022 through AI.MODELRUN (0.x dialect) equals
the eager PyTorch model and the FizzBuzz truth of n + 1."""

import numpy as np

from redis_inputs import NUMBERS, encoder
from fizbuz_codec import true_class
from serving.redis.acl import RUNNER


def book_client(admin, r, model_pt, numbers):
    """The book's snippet (input() replaced by a loop over `numbers`)."""
    answers = {}
    admin.execute_command("AI.MODELSET", "model", "TORCH", "CPU", model_pt)
    for n in numbers:
        number = n + 1
        inputs = encoder(number)
        r.execute_command("AI.TENSORSET", "a", "FLOAT", *inputs.shape, "BLOB", inputs.tobytes())
        r.execute_command("AI.MODELRUN", "model", "INPUTS", "a", "OUTPUTS", "out")
        typ, shape, buf = r.execute_command("AI.TENSORGET", "out", "BLOB")
        prediction = np.frombuffer(buf, dtype=np.float32).argmax()
        answers[n] = (typ, shape, np.frombuffer(buf, dtype=np.float32), prediction)
    return answers


def test_book_snippet_answers_every_input_like_eager_pytorch(server, r, model_blob, eager_logits):
    answers = book_client(r, server.client(RUNNER), model_blob, NUMBERS)
    for n in NUMBERS:
        typ, shape, logits, prediction = answers[n]
        assert typ == b"FLOAT" and shape == [1, 4]
        np.testing.assert_allclose(logits, eager_logits[n], atol=1e-5)
        assert prediction == eager_logits[n].argmax() == true_class(n + 1), n


def test_modelexecute_1x_dialect_answers_every_input(server, r, model_blob, eager_logits):
    r.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "TAG", "v1", "BLOB", model_blob)
    r = server.client(RUNNER)
    batch = np.stack([encoder(n + 1)[0] for n in NUMBERS])
    # One run of all 1023 rows, and one run per row (pipelined).
    r.execute_command("AI.TENSORSET", "all", "FLOAT", *batch.shape, "BLOB", batch.tobytes())
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "all", "OUTPUTS", 1, "all_out") == b"OK"
    reply = r.execute_command("AI.TENSORGET", "all_out", "META", "BLOB")
    meta = dict(zip(reply[::2], reply[1::2]))
    assert meta[b"dtype"] == b"FLOAT" and meta[b"shape"] == [len(NUMBERS), 4]
    np.testing.assert_allclose(np.frombuffer(meta[b"blob"], np.float32).reshape(-1, 4), eager_logits, atol=1e-5)

    pipe = r.pipeline(transaction=False)
    for n in NUMBERS:
        pipe.execute_command("AI.TENSORSET", f"in{n}", "FLOAT", 1, 10, "VALUES", *encoder(n + 1)[0].tolist())
        pipe.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, f"in{n}", "OUTPUTS", 1, f"out{n}", "TIMEOUT", 60000)
        pipe.execute_command("AI.TENSORGET", f"out{n}", "VALUES")
    replies = pipe.execute()
    for n, (_, ran, (typ, shape, values)) in zip(NUMBERS, zip(*[iter(replies)] * 3)):
        assert ran == b"OK" and typ == b"FLOAT" and shape == [1, 4]
        np.testing.assert_allclose([float(v) for v in values], eager_logits[n], atol=1e-5)
        assert np.argmax([float(v) for v in values]) == true_class(n + 1)


def test_model_and_tensor_metadata(r, model_blob):
    r.execute_command(
        "AI.MODELSTORE",
        "m",
        "TORCH",
        "CPU",
        "TAG",
        "v1",
        "BATCHSIZE",
        8,
        "MINBATCHSIZE",
        2,
        "MINBATCHTIMEOUT",
        5,
        "BLOB",
        model_blob[:100],
        model_blob[100:],
    )
    reply = r.execute_command("AI.MODELGET", "m", "META", "BLOB")
    meta = dict(zip(reply[::2], reply[1::2]))
    assert meta[b"backend"] == b"TORCH" and meta[b"device"] == b"CPU" and meta[b"tag"] == b"v1"
    assert (meta[b"batchsize"], meta[b"minbatchsize"], meta[b"minbatchtimeout"]) == (8, 2, 5)
    assert meta[b"blob"] == model_blob  # chunks joined
    assert r.execute_command("AI.CONFIG", "GET", "MODEL_CHUNK_SIZE") == 511 * 1024 * 1024
    r.execute_command("AI.TENSORSET", "t", "INT64", 2, 2, "VALUES", 1, -2, 3, 4)
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"INT64", [2, 2], [1, -2, 3, 4]]
    assert r.execute_command("AI.TENSORGET", "t", "META") == [b"INT64", [2, 2]]
    r.execute_command("AI.TENSORSET", "d", "DOUBLE", 1, "VALUES", 0.25)
    assert r.execute_command("AI.TENSORGET", "d", "META", "VALUES")[-1] == [b"0.25"]
    r.execute_command("AI.TENSORSET", "z", "INT32", 3)  # no data: zeros
    assert r.execute_command("AI.TENSORGET", "z", "VALUES")[-1] == [0, 0, 0]
    assert r.execute_command("AI.MODELDEL", "m") == b"OK"
    assert r.exists("m") == 0
