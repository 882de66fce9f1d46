"""What a hostile client (or a damaged file) can send the module, each an
error reply or harmless, the server alive and its memory flat (issue 22,
item 2): models changing their inputs in place or with stride tricks, RESTORE
payloads with bad dims or cut short, AI.TENSORSET with huge dims and a tiny
BLOB, and one model waiting for MINBATCHSIZE while others must still run.
Memory is asserted in bytes: Redis's used_memory and the process's peak RSS
(VmHWM, reset through /proc/PID/clear_refs before each measured step)."""

import subprocess

import psutil
import pytest
import redis

from redis_hostile import (
    DATA,
    GOOD,
    MiB,
    Grows,
    StrideZero,
    ZeroesItsInput,
    assert_good_run,
    bad_tensor_payloads,
    peak_rss,
    peak_rss_reset,
    script,
)
from redis_holds import blocked_clients, start_run, worker_held
from redis_payloads import check_encoder, payload, rdb_file
from redis_servers import RedisProcess, server_env, wait_until


@pytest.fixture
def r(server, model_blob):
    client = server.client()
    client.execute_command("AI.MODELSTORE", "model", "TORCH", "CPU", "BLOB", model_blob)
    return client


@pytest.mark.parametrize("model", [ZeroesItsInput, StrideZero, Grows])
def test_a_model_changing_its_input_in_place_leaves_the_stored_key_alone(server, r, model):
    r.execute_command("AI.MODELSTORE", "hostile", "TORCH", "CPU", "BLOB", script(model()))
    r.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 10, "BLOB", GOOD.tobytes())
    used = r.info("memory")["used_memory"]
    for _ in range(20):
        r.execute_command("AI.MODELEXECUTE", "hostile", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
        # The key still holds its 40 bytes, no more (no heap memory goes out), unchanged.
        assert r.execute_command("AI.TENSORGET", "x", "BLOB") == [b"FLOAT", [1, 10], GOOD.tobytes()]
    assert r.execute_command("AI.TENSORGET", "x", "META") == [b"FLOAT", [1, 10]]
    assert r.execute_command("DUMP", "x") is not None  # RDB/AOF/replication read the same value
    assert r.info("memory")["used_memory"] - used < MiB
    assert_good_run(r)


def test_tensorset_with_huge_dims_and_a_tiny_blob_allocates_nothing(server, r):
    pid = server.process.pid
    assert_good_run(r)
    peak_rss_reset(pid)
    before = peak_rss(pid), r.info("memory")["used_memory"]
    for command in (
        ["AI.TENSORSET", "t", "FLOAT", 1 << 27, "BLOB", b"x" * 50],  # 512 MiB, the limit
        ["AI.TENSORSET", "t", "INT8", 1 << 14, 1 << 15, "BLOB", b""],
        ["AI.TENSORSET", "t", "DOUBLE", 1 << 26, "VALUES", 1, 2, 3],
    ):
        with pytest.raises(redis.ResponseError, match="data length does not match|wrong number of values"):
            r.execute_command(*command)
    assert r.ping()
    after = peak_rss(pid), r.info("memory")["used_memory"]
    assert after[0] - before[0] < 32 * MiB, (before, after)  # main touched 512 MiB here
    assert after[1] - before[1] < MiB, (before, after)
    assert r.exists("t") == 0
    assert_good_run(r)


# --- RESTORE of bad tensor payloads ---


@pytest.fixture
def envelope(r):
    r.execute_command("AI.TENSORSET", "real", "FLOAT", 2, 5, "BLOB", DATA)
    return check_encoder(r.dump("real"), 0, [2, 5], DATA)


def test_restore_of_bad_tensor_payloads_is_an_error_and_breaks_nothing(server, r, envelope):
    cases = list(bad_tensor_payloads(envelope))
    r.execute_command("RESTORE", "copy", 0, r.dump("real"))  # the encoder's frame is accepted
    assert r.execute_command("AI.TENSORGET", "copy", "BLOB") == [b"FLOAT", [2, 5], DATA]
    pid = server.process.pid
    assert_good_run(r)
    peak_rss_reset(pid)
    used = r.info("memory")["used_memory"]
    for _ in range(3):
        for name, data in cases:
            with pytest.raises(redis.ResponseError, match="Bad data format"):
                r.execute_command("RESTORE", "bad", 0, data, "REPLACE")
            assert r.ping(), name
            assert r.exists("bad") == 0, name
    assert r.info("memory")["used_memory"] - used < MiB
    assert peak_rss(pid) - psutil.Process(pid).memory_info().rss < 32 * MiB
    assert "refused a tensor" in server.log.read_text()
    assert_good_run(r)


@pytest.mark.parametrize("case", ["negative dim", "huge dims", "a 0-dim tensor", "cut after 20 bytes"])
def test_an_rdb_file_with_a_bad_tensor_is_refused_cleanly(server_folder, module_path, redis_secrets, envelope, case):
    """At start-up a bad value in the RDB file makes Redis refuse to load it and
    exit with the module's reason in the log, not die of a signal (an abort).
    (Redis then runs its RDB checker, which cannot read module values and
    exits with its own status: the exit code is not the point.)"""
    body = dict(bad_tensor_payloads(envelope))[case][:-10]  # the value, without the DUMP footer
    proc = RedisProcess(server_folder / "rdb", module_path, secrets=redis_secrets)
    folder = proc.folder
    (folder / "dump.rdb").write_bytes(rdb_file(b"bad", body))
    with open(folder / "stderr.log", "wb") as output:
        process = subprocess.Popen(
            proc.command(),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=server_env(),
            cwd=folder,
            start_new_session=True,
        )
    try:
        # Waiting for its exit (bounded): loading fails at once, there is nothing to be ready for.
        assert process.wait(60) >= 0, (folder / "stderr.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    log = proc.log.read_text()
    assert "refused a tensor" in log and "Ready to accept connections" not in log, proc.log_tail()


def test_restore_of_a_cut_model_payload_is_an_error(server, r, model_blob):
    dump = r.dump("model")
    version = dump[-10:-8]
    for keep in (12, 20, len(dump) // 2, len(dump) - 11):
        with pytest.raises(redis.ResponseError, match="Bad data format"):
            r.execute_command("RESTORE", "bad", 0, payload(dump[:keep], version), "REPLACE")
        assert r.ping()
    r.execute_command("RESTORE", "copy", 0, dump)
    assert r.execute_command("AI.MODELGET", "copy", "BLOB") == [b"blob", model_blob]
    assert_good_run(r)


# --- the run queue and TIMEOUT ---


def test_a_run_waiting_for_minbatchsize_does_not_block_other_models(server, r, model_blob):
    r.execute_command("AI.MODELSTORE", "waits", "TORCH", "CPU", "BATCHSIZE", 8, "MINBATCHSIZE", 8, "BLOB", model_blob)
    r.execute_command("AI.TENSORSET", "one", "FLOAT", 1, 10, "BLOB", GOOD.tobytes())
    before = blocked_clients(r)
    waiting = []
    thread = start_run(server, "waits", "one", "waited", waiting)
    wait_until(lambda: blocked_clients(r) == before + 1, "the run to wait for 7 more rows")
    # Another model's runs go past it (TIMEOUT: on a blocked queue they would time out).
    for _ in range(3):
        assert (
            r.execute_command("AI.MODELEXECUTE", "model", "INPUTS", 1, "one", "OUTPUTS", 1, "o", "TIMEOUT", 10000)
            == b"OK"
        )
    assert blocked_clients(r) == before + 1 and waiting == []  # still waiting for its rows
    r.execute_command("AI.TENSORSET", "seven", "FLOAT", 7, 10)
    assert r.execute_command("AI.MODELEXECUTE", "waits", "INPUTS", 1, "seven", "OUTPUTS", 1, "o3") == b"OK"
    thread.join(60)
    assert waiting == [b"OK"]
    info = dict(zip(*[iter(r.execute_command("AI.INFO", "waits"))] * 2))
    assert (info[b"calls"], info[b"forwards"], info[b"errors"]) == (2, 1, 0)  # the 1 + 7 rows joined


def test_timeout_bounds_the_wait_not_a_run_that_started(server, r, holder):
    """As the README says: TIMEOUT is how long a run may wait to start; a run
    that started is never cut short (the holding run outlives its TIMEOUT)."""
    with worker_held(server, holder, extra=("TIMEOUT", 3000)):
        # Queued after the holding run, with the same TIMEOUT: when it times
        # out, the holding run's TIMEOUT has passed too, mid-forward.
        with pytest.raises(redis.ResponseError, match="TIMEDOUT"):
            r.execute_command("AI.MODELEXECUTE", "model", "INPUTS", 1, "hold:in", "OUTPUTS", 1, "late", "TIMEOUT", 3000)
    # worker_held checked that the holding run answered OK.
    assert r.exists("late") == 0 and r.exists("hold:out") == 1
    assert_good_run(r)
