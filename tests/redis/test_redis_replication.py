"""Replication: a replica with the module gets the model and a run's outputs
(the run is replicated as AI.TENSORSET of its outputs, not as the run) and
serves them; with 3 redis-sentinels, killing the master promotes the replica
and predictions go on."""

import numpy as np
import pytest
import redis
import redis.sentinel

from redis_inputs import encoder
from fizbuz_codec import true_class
from redis_servers import RedisProcess, wait_until
from serving.redis.acl import RUNNER, SENTINEL


def predict(r, n):
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 10, "BLOB", encoder(n + 1).tobytes())
    r.execute_command("AI.MODELRUN", "model", "INPUTS", "a", "OUTPUTS", "out")
    return int(np.frombuffer(r.execute_command("AI.TENSORGET", "out", "BLOB")[2], np.float32).argmax())


def link_up(replica):
    return replica.client().info("replication").get("master_link_status") == "up"


@pytest.fixture
def pair(start_redis):
    # No 5-second wait for more replicas before a full sync (7.0's default).
    master = start_redis("master", args=["--repl-diskless-sync-delay", "0"])
    replica = start_redis("replica", args=["--replicaof", "127.0.0.1", str(master.port)])
    wait_until(lambda: link_up(replica), "the replica's link to its master")
    return master, replica


def test_replica_gets_the_model_and_the_outputs_not_the_run(pair, model_blob, eager_logits):
    master, replica = pair
    m, rep = master.client(), replica.client(RUNNER)
    m.execute_command("AI.MODELSET", "model", "TORCH", "CPU", model_blob)
    assert predict(m, 14) == true_class(15)
    assert m.wait(1, 10000) == 1  # the replica acknowledged everything so far
    typ, shape, buf = rep.execute_command("AI.TENSORGET", "out", "BLOB")
    assert (typ, shape) == (b"FLOAT", [1, 4])
    np.testing.assert_allclose(np.frombuffer(buf, np.float32), eager_logits[14], atol=1e-5)
    meta = replica.client().execute_command("AI.MODELGET", "model", "BLOB")  # admin's to read
    assert meta[-1] == model_blob
    # The replica's model never ran: the master sent outputs, not AI.MODELRUN.
    info = dict(zip(*[iter(rep.execute_command("AI.INFO", "model"))] * 2))
    assert info[b"calls"] == 0
    with pytest.raises(redis.ReadOnlyError):  # the runner on a replica
        rep.execute_command("AI.MODELRUN", "model", "INPUTS", "a", "OUTPUTS", "out")


def sentinel_conf(master_port, secrets, quorum=2):
    # The sentinels reach the servers as the sentinel user (the default user is off).
    return (
        f"sentinel monitor fizbuz 127.0.0.1 {master_port} {quorum}\n"
        "sentinel down-after-milliseconds fizbuz 1000\n"
        "sentinel failover-timeout fizbuz 10000\n"
        f"sentinel auth-user fizbuz {SENTINEL}\n"
        f"sentinel auth-pass fizbuz {secrets.password(SENTINEL)}\n"
    )


def test_sentinel_failover_promotes_the_replica_and_predictions_go_on(pair, server_folder, model_blob, redis_secrets):
    master, replica = pair
    m = master.client()
    m.execute_command("AI.MODELSET", "model", "TORCH", "CPU", model_blob)
    assert predict(m, 14) == true_class(15)
    assert m.wait(1, 10000) == 1
    taken = {master.port, replica.port}
    sentinels = []
    try:
        for i in range(3):
            s = RedisProcess(
                server_folder / f"sentinel{i}", sentinel_conf=sentinel_conf(master.port, redis_secrets), taken=taken
            )
            taken.add(s.port)
            sentinels.append(s.start())
        # Every sentinel knows the replica and the other two sentinels.
        for s in sentinels:
            wait_until(
                lambda s=s: (lambda st: st["num-slaves"] == 1 and st["num-other-sentinels"] == 2)(
                    s.client().sentinel_master("fizbuz")
                ),
                "sentinels to discover the replica and each other",
            )
        master.stop(kill=True)
        ask = sentinels[0].client()
        wait_until(
            lambda: ask.sentinel_get_master_addr_by_name("fizbuz")[1] in (replica.port, str(replica.port)),
            "the sentinels to promote the replica",
            seconds=60,
        )
        promoted = replica.client()
        wait_until(lambda: promoted.info("replication")["role"] == "master", "the replica to become master")
        # Reach the master the way a client would: through the sentinels.
        sentinel = redis.Sentinel([("127.0.0.1", s.port) for s in sentinels])
        wait_until(lambda: _discovers(sentinel, replica.port), "every sentinel to report the new master healthy")
        client = sentinel.master_for("fizbuz", **redis_secrets.credentials(RUNNER))
        assert int(np.frombuffer(client.execute_command("AI.TENSORGET", "out", "BLOB")[2], np.float32).argmax()) == 3
        for n in (2, 4, 9, 14, 29):
            assert predict(client, n) == true_class(n + 1)
    finally:
        for s in sentinels:
            s.stop(kill=True)


def _discovers(sentinel, port):
    try:
        return sentinel.discover_master("fizbuz")[1] == port
    except redis.sentinel.MasterNotFoundError:
        return False
