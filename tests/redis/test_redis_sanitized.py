"""The AddressSanitizer + UBSan build of the module, in the default test run
(issue 22): built into build/redis-asan by the real build script, loaded by a
redis-server with the ASan runtime preloaded, and fed the hostile cases of
test_redis_hostile.py. Any sanitizer report stops the server
(abort_on_error, halt_on_error), so the server being alive and its stderr
free of reports at the end is the assertion.

Marked slow: a fresh sanitizer build takes several minutes on 2 shared cores
(a rebuild after no change takes seconds). FIZBUZ_REDIS_SANITIZE=ON runs
every Redis test against this build instead."""

import os
import subprocess

import psutil
import pytest
import redis

from fizbuz.contract import ROOT
from redis_hostile import DATA, GOOD, Grows, StrideZero, ZeroesItsInput, assert_good_run, bad_tensor_payloads, script
from redis_payloads import check_encoder, payload
from redis_servers import RedisProcess

pytestmark = pytest.mark.slow

ASAN_BUILD = ROOT / "build" / "redis-asan"
REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


@pytest.fixture(scope="module")
def asan_module():
    env = dict(os.environ, FIZBUZ_REDIS_SANITIZE="ON", FIZBUZ_REDIS_BUILD_DIR=str(ASAN_BUILD))
    result = subprocess.run(
        [str(ROOT / "serving" / "redis" / "build.sh")], capture_output=True, text=True, timeout=3600, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def asan_server(server_folder, asan_module, redis_secrets):
    proc = RedisProcess(server_folder / "asan", asan_module, secrets=redis_secrets, sanitized=True)
    try:
        yield proc.start()
    finally:
        proc.stop(kill=True)


def reports(server):
    text = (server.folder / "stderr.log").read_text(errors="replace")
    return [line for line in text.splitlines() if any(r in line for r in REPORTS)]


def test_hostile_input_under_address_and_ub_sanitizers(asan_server, model_blob):
    # The server really runs with the ASan runtime (preloaded: Redis itself is not instrumented).
    maps = psutil.Process(asan_server.process.pid).memory_maps()
    assert any("libasan" in m.path for m in maps) and any("redis-asan" in m.path for m in maps)
    r = asan_server.client()
    r.execute_command("AI.MODELSTORE", "model", "TORCH", "CPU", "BATCHSIZE", 4, "BLOB", model_blob)
    assert_good_run(r)
    for hostile in (ZeroesItsInput, StrideZero, Grows):
        r.execute_command("AI.MODELSTORE", "hostile", "TORCH", "CPU", "BLOB", script(hostile()))
        r.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 10, "BLOB", GOOD.tobytes())
        for _ in range(3):
            r.execute_command("AI.MODELEXECUTE", "hostile", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
            assert r.execute_command("AI.TENSORGET", "x", "BLOB") == [b"FLOAT", [1, 10], GOOD.tobytes()]
    for command in (
        ["AI.TENSORSET", "t", "FLOAT", 1 << 27, "BLOB", b"x" * 50],
        ["AI.TENSORSET", "t", "DOUBLE", 1 << 26, "VALUES", 1, 2, 3],
        ["AI.TENSORSET", "t", "INT8", 2, "VALUES", 1, 300],
    ):
        with pytest.raises(redis.ResponseError):
            r.execute_command(*command)
    r.execute_command("AI.TENSORSET", "real", "FLOAT", 2, 5, "BLOB", DATA)
    envelope = check_encoder(r.dump("real"), 0, [2, 5], DATA)
    for _, data in bad_tensor_payloads(envelope):
        with pytest.raises(redis.ResponseError, match="Bad data format"):
            r.execute_command("RESTORE", "bad", 0, data, "REPLACE")
    dump = r.dump("model")
    with pytest.raises(redis.ResponseError, match="Bad data format"):
        r.execute_command("RESTORE", "bad", 0, payload(dump[: len(dump) // 2], dump[-10:-8]))
    # Values of every type through TENSORGET, RDB save/load (DEBUG RELOAD is off: SAVE + RESTORE of a DUMP).
    r.execute_command("AI.TENSORSET", "ints", "INT16", 2, 2, "VALUES", 1, -2, 3, 4)
    assert r.execute_command("AI.TENSORGET", "ints", "VALUES") == [b"INT16", [2, 2], [1, -2, 3, 4]]
    r.execute_command("RESTORE", "ints2", 0, r.dump("ints"))
    assert r.save()
    assert_good_run(r)
    assert asan_server.alive() and reports(asan_server) == []
