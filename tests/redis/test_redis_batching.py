"""BATCHSIZE joins queued runs of one model into one forward pass, seen in
AI.INFO's counters (calls vs forwards), never in timings; each client still
gets exactly its own rows back."""

import threading

import numpy as np
import redis

from redis_inputs import encoder
from fizbuz_codec import true_class
from redis_holds import blocked_clients, worker_held
from redis_servers import wait_until


def info(r, key):
    reply = r.execute_command("AI.INFO", key)
    return {k.decode(): v for k, v in zip(reply[::2], reply[1::2])}


def start_runs(server, key, numbers_per_client):
    """One thread per client, each making one run of its own rows; returns
    (threads, results) where results[i] is client i's logits."""
    results = {}

    def run(i, numbers):
        c = server.client()
        batch = np.concatenate([encoder(n + 1) for n in numbers])
        c.execute_command("AI.TENSORSET", f"in{i}", "FLOAT", *batch.shape, "BLOB", batch.tobytes())
        c.execute_command("AI.MODELEXECUTE", key, "INPUTS", 1, f"in{i}", "OUTPUTS", 1, f"out{i}")
        _, shape, buf = c.execute_command("AI.TENSORGET", f"out{i}", "BLOB")
        results[i] = np.frombuffer(buf, np.float32).reshape(shape)

    threads = [threading.Thread(target=run, args=(i, ns)) for i, ns in enumerate(numbers_per_client)]
    for t in threads:
        t.start()
    return threads, results


def check(results, numbers_per_client, eager_logits):
    for i, numbers in enumerate(numbers_per_client):
        np.testing.assert_allclose(results[i], eager_logits[numbers], atol=1e-5)
        assert [int(x) for x in results[i].argmax(1)] == [true_class(n + 1) for n in numbers]


def test_minbatchsize_joins_eight_clients_into_one_forward(server, model_blob, eager_logits):
    r = server.client()
    r.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "BATCHSIZE", 8, "MINBATCHSIZE", 8, "BLOB", model_blob)
    numbers = [[n] for n in (14, 2, 4, 9, 29, 99, 1021, 0)]
    threads, results = start_runs(server, "m", numbers)
    for t in threads:
        t.join(60)
    check(results, numbers, eager_logits)
    stats = info(r, "m")
    assert (stats["calls"], stats["samples"], stats["forwards"]) == (8, 8, 1)


def test_runs_queued_under_load_share_forwards(server, model_blob, holder, eager_logits):
    """16 clients queue runs (of 1..3 rows) while the run thread is busy; when it
    is free they go through in one forward of up to BATCHSIZE rows."""
    r = server.client()
    r.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "BATCHSIZE", 64, "BLOB", model_blob)
    numbers = [list(range(i * 7, i * 7 + 1 + i % 3)) for i in range(16)]
    with worker_held(server, holder):
        before = blocked_clients(r)
        threads, results = start_runs(server, "m", numbers)
        wait_until(lambda: blocked_clients(r) == before + 16, "16 runs to queue")
    for t in threads:
        t.join(60)
    check(results, numbers, eager_logits)
    stats = info(r, "m")
    assert stats["calls"] == 16 and stats["samples"] == sum(map(len, numbers))
    assert stats["forwards"] == 1, stats


def test_batches_stop_at_batchsize_and_never_mix_shapes(server, model_blob, holder, eager_logits):
    r = server.client()
    r.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "BATCHSIZE", 4, "BLOB", model_blob)
    r.execute_command("AI.TENSORSET", "wide", "FLOAT", 1, 5)
    numbers = [[n] for n in range(10)]
    with worker_held(server, holder):
        before = blocked_clients(r)
        threads, results = start_runs(server, "m", numbers)
        wait_until(lambda: blocked_clients(r) == before + 10, "10 runs to queue")
        # A run whose input does not fit joins no batch and fails alone.
        failed = []
        bad = threading.Thread(target=lambda: failed.append(_run_bad(server)))
        bad.start()
        wait_until(lambda: blocked_clients(r) == before + 11, "the bad run to queue")
    for t in threads + [bad]:
        t.join(60)
    check(results, numbers, eager_logits)
    assert "cannot be multiplied" in failed[0]
    stats = info(r, "m")
    assert stats["calls"] == 11 and stats["errors"] == 1
    assert stats["forwards"] == 4  # 10 rows in batches of at most 4: 3 forwards, and the bad run's


def _run_bad(server):
    try:
        server.client().execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "wide", "OUTPUTS", 1, "o")
    except redis.ResponseError as error:
        return str(error)
    return "no error"


def test_minbatchtimeout_runs_a_lone_request(server, model_blob, eager_logits):
    r = server.client()
    r.execute_command(
        "AI.MODELSTORE",
        "m",
        "TORCH",
        "CPU",
        "BATCHSIZE",
        8,
        "MINBATCHSIZE",
        4,
        "MINBATCHTIMEOUT",
        20,
        "BLOB",
        model_blob,
    )
    threads, results = start_runs(server, "m", [[14]])
    threads[0].join(60)
    check(results, [[14]], eager_logits)
    assert info(r, "m")["forwards"] == 1
