"""Fixtures for the RedisAI-compatible module: the real .so built by
serving/redis/build.sh, a fizbuz.pt traced from the committed weights, the
eager model's answers, and real Redis servers that are always stopped."""

import os
import subprocess

import pytest
import torch

from fizbuz.contract import ROOT
from fizbuz.model import encode_batch
from serving.redis.acl import Secrets
from redis_holds import Holder
from redis_inputs import NUMBERS
from redis_servers import SANITIZE, RedisProcess

REDIS_ROOM = ROOT / "serving" / "redis"


@pytest.fixture(scope="session")
def module_path():
    """The module built by the real build script (a no-change rebuild takes seconds);
    FIZBUZ_REDIS_SANITIZE=ON builds and tests the AddressSanitizer + UBSan one."""
    env = dict(os.environ)
    if SANITIZE:
        env["FIZBUZ_REDIS_BUILD_DIR"] = str(ROOT / "build" / "redis-asan")
    result = subprocess.run([str(REDIS_ROOM / "build.sh")], capture_output=True, text=True, timeout=1800, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def redis_secrets(tmp_path_factory):
    """The ACL users' passwords every test server shares (as a replica set or
    cluster would), made as start_redis.sh makes them."""
    return Secrets(tmp_path_factory.mktemp("redis-secrets") / "secrets").ensure()


@pytest.fixture(scope="session")
def holder(tmp_path_factory):
    """The model that holds the run thread until released (redis_holds.py)."""
    return Holder(tmp_path_factory.mktemp("hold"))


@pytest.fixture(scope="session")
def model_blob(torchscript_model):
    return torchscript_model.read_bytes()


@pytest.fixture(scope="session")
def eager_logits(eager_model):
    """The eager model's logits for the input of every n (the bits of n + 1)."""
    with torch.no_grad():
        return eager_model(encode_batch([n + 1 for n in NUMBERS])).numpy()


@pytest.fixture
def start_redis(tmp_path, module_path, redis_secrets):
    """start_redis(name, args=..., module=True) -> a started RedisProcess; every
    one is stopped when the test ends, whatever happened."""
    started = []

    def start(name="redis", args=(), module=True, taken=(), **kwargs):
        taken = {p.port for p in started} | set(taken)
        kwargs.setdefault("secrets", redis_secrets)
        proc = RedisProcess(tmp_path / name, module_path if module else None, args, taken=taken, **kwargs)
        started.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in reversed(started):
            proc.stop(kill=True)


@pytest.fixture
def server(start_redis):
    return start_redis()


@pytest.fixture
def r(server):
    return server.client()
