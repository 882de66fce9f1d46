"""Models and tensors are module data types that last: a restart from an RDB
snapshot and from an AOF (rewritten by the module's AOF callbacks, then
appended to by replicated runs) keeps the model answering."""

import numpy as np

from redis_inputs import encoder
from fizbuz_codec import true_class
from redis_servers import wait_until


def predict(r, n, key="model"):
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 10, "BLOB", encoder(n + 1).tobytes())
    r.execute_command("AI.MODELRUN", key, "INPUTS", "a", "OUTPUTS", "out")
    _, _, buf = r.execute_command("AI.TENSORGET", "out", "BLOB")
    return int(np.frombuffer(buf, np.float32).argmax())


def fill(r, model_blob):
    r.execute_command("AI.MODELSTORE", "model", "TORCH", "CPU", "TAG", "kept", "BATCHSIZE", 4, "BLOB", model_blob)
    r.execute_command("AI.TENSORSET", "ints", "INT32", 2, 2, "VALUES", 1, 2, 3, -4)
    assert predict(r, 14) == true_class(15)


def check_kept(r, model_blob):
    assert r.execute_command("AI.TENSORGET", "ints", "VALUES") == [b"INT32", [2, 2], [1, 2, 3, -4]]
    meta = r.execute_command("AI.MODELGET", "model", "META", "BLOB")
    meta = dict(zip(meta[::2], meta[1::2]))
    assert meta[b"tag"] == b"kept" and meta[b"batchsize"] == 4 and meta[b"blob"] == model_blob
    # The output of the last run before the restart, and new runs.
    assert int(np.frombuffer(r.execute_command("AI.TENSORGET", "out", "BLOB")[2], np.float32).argmax()) == true_class(
        15
    )
    for n in (2, 4, 9, 29):
        assert predict(r, n) == true_class(n + 1)


def test_restart_from_rdb_keeps_the_model(start_redis, model_blob):
    first = start_redis("rdb")
    fill(first.client(), model_blob)
    assert first.client().save()
    assert first.stop(), first.log_tail()  # a clean shutdown on SIGTERM
    again = start_redis("rdb", port=first.port)
    check_kept(again.client(), model_blob)


def test_restart_from_a_rewritten_aof_keeps_the_model(start_redis, model_blob):
    # Without the RDB preamble the rewrite is made of the module's own commands.
    args = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no", "--appendfsync", "always"]
    first = start_redis("aof", args=args)
    r = first.client()
    fill(r, model_blob)
    r.bgrewriteaof()
    wait_until(
        lambda: (
            r.info("persistence")["aof_rewrite_in_progress"] == 0
            and r.info("persistence")["aof_rewrite_scheduled"] == 0
            and r.info("persistence")["aof_last_bgrewrite_status"] == "ok"
        ),
        "the AOF rewrite",
    )
    base = list((first.folder / "appendonlydir").glob("*.base.aof"))
    assert base and b"AI.MODELSTORE" in base[0].read_bytes()
    assert predict(r, 14) == true_class(15)  # appended after the rewrite, as AI.TENSORSET
    assert first.stop(), first.log_tail()  # a clean shutdown on SIGTERM
    again = start_redis("aof", args=args, port=first.port)
    check_kept(again.client(), model_blob)
