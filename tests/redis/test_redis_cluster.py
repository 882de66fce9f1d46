"""A real 3-master Redis Cluster with the module on every node: runs whose
keys share a hash tag are answered by the node that owns the slot; runs whose
keys do not are refused with CROSSSLOT (Redis learns a run's keys from the
module's getkeys callback)."""

import os
import subprocess

import numpy as np
import pytest
import redis

from fizbuz_codec import true_class
from fizbuz.lifecycle import free_port
from redis_inputs import encoder
from redis_servers import wait_until
from serving.redis.acl import ADMIN, RUNNER


@pytest.fixture
def cluster(start_redis, redis_secrets):
    nodes, taken = [], set()
    for i in range(3):
        # The bus port is port + 10000 unless set: pick a free one of our own.
        bus = free_port(taken)
        taken.add(bus)
        node = start_redis(
            f"node{i}",
            args=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--cluster-port",
                str(bus),
            ],
            taken=taken,
        )
        taken.add(node.port)
        nodes.append(node)
    # As admin; the password in the environment redis-cli reads, not on its command line.
    create = subprocess.run(
        [
            "redis-cli",
            "--user",
            ADMIN,
            "--cluster",
            "create",
            *[f"127.0.0.1:{n.port}" for n in nodes],
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, REDISCLI_AUTH=redis_secrets.password(ADMIN)),
    )
    assert create.returncode == 0, create.stdout + create.stderr
    for n in nodes:
        wait_until(lambda n=n: n.client().cluster("info")["cluster_state"] == "ok", "CLUSTER INFO to say ok")
    return nodes


def owner(nodes, key):
    """The node that serves `key`'s slot."""
    r = nodes[0].client()
    slot = r.cluster("keyslot", key)
    for start, end, master, *_replicas in r.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return next(n for n in nodes if n.port == master[1])
    raise AssertionError(f"no node serves slot {slot}")


def test_hash_tagged_runs_work_on_each_shard_and_others_get_crossslot(cluster, model_blob):
    served = set()
    for tag in ("a", "b", "c", "d", "e", "f"):
        node = owner(cluster, f"{{{tag}}}")
        served.add(node.port)
        r = node.client()
        model, inp, out = f"{{{tag}}}model", f"{{{tag}}}in", f"{{{tag}}}out"
        r.execute_command("AI.MODELSET", model, "TORCH", "CPU", model_blob)
        for n in (14, 2, 4, 9):
            r.execute_command("AI.TENSORSET", inp, "FLOAT", 1, 10, "BLOB", encoder(n + 1).tobytes())
            r.execute_command("AI.MODELRUN", model, "INPUTS", inp, "OUTPUTS", out)
            _, _, buf = r.execute_command("AI.TENSORGET", out, "BLOB")
            assert int(np.frombuffer(buf, np.float32).argmax()) == true_class(n + 1)
        with pytest.raises(redis.ResponseError, match="CROSSSLOT"):
            r.execute_command("AI.MODELRUN", model, "INPUTS", inp, "OUTPUTS", "untagged_out")
        with pytest.raises(redis.ResponseError, match="CROSSSLOT"):
            r.execute_command("AI.MODELEXECUTE", model, "INPUTS", 1, "other_in", "OUTPUTS", 1, out)
    assert len(served) == 3  # the six tags landed on all three shards


def test_a_key_on_another_node_is_moved(cluster):
    node = owner(cluster, "{a}")
    elsewhere = next(n for n in cluster if n is not node)
    with pytest.raises(redis.ResponseError, match="MOVED"):
        elsewhere.client().execute_command("AI.TENSORSET", "{a}t", "FLOAT", 1)


def test_cluster_client_routes_by_hash_tag(cluster, model_blob, redis_secrets):
    admin = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port, **redis_secrets.credentials(ADMIN))
    admin.execute_command("AI.MODELSET", "{fb}model", "TORCH", "CPU", model_blob)
    admin.close()
    # The runner's rules cover what a cluster client needs (slot map, COMMAND).
    rc = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port, **redis_secrets.credentials(RUNNER))
    try:
        rc.execute_command("AI.TENSORSET", "{fb}a", "FLOAT", 1, 10, "BLOB", encoder(15).tobytes())
        rc.execute_command("AI.MODELRUN", "{fb}model", "INPUTS", "{fb}a", "OUTPUTS", "{fb}out")
        _, _, buf = rc.execute_command("AI.TENSORGET", "{fb}out", "BLOB")
        assert int(np.frombuffer(buf, np.float32).argmax()) == true_class(15)
    finally:
        rc.close()
