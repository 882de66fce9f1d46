"""Fixtures for the RedisAI-compatible module: the real .so built by
serving/redis/build.sh, a fizbuz.pt traced from the committed weights, the
eager model's answers, and real Redis servers that are always stopped."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from fizbuz.contract import ROOT
from fizbuz.model import encode_batch
from serving.redis.acl import Secrets
from redis_holds import Holder
from redis_inputs import NUMBERS
from redis_servers import SANITIZE, RedisProcess, remove_home, server_home

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
def servers_home():
    """Where the servers' folders go: a folder their (unprivileged) user can enter."""
    home = server_home()
    try:
        yield home
    finally:
        remove_home(home)


@pytest.fixture
def server_folder(servers_home, request):
    """This test's own folder under servers_home (open for the servers' user to enter)."""
    folder = Path(tempfile.mkdtemp(prefix=request.node.name[:40].replace("/", "_") + "-", dir=servers_home))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def holder(servers_home):
    """The model that holds the run thread until released (redis_holds.py)."""
    return Holder(Path(tempfile.mkdtemp(prefix="hold-", dir=servers_home)))  # Holder gives it to that user


@pytest.fixture(scope="session")
def model_blob(torchscript_model):
    return torchscript_model.read_bytes()


@pytest.fixture(scope="session")
def eager_logits(eager_model):
    """The eager model's logits for the input of every n (the bits of n + 1)."""
    with torch.no_grad():
        return eager_model(encode_batch([n + 1 for n in NUMBERS])).numpy()


@pytest.fixture
def start_redis(server_folder, module_path, redis_secrets):
    """start_redis(name, args=..., module=True) -> a started RedisProcess; every
    one is stopped when the test ends, whatever happened."""
    started = []

    def start(name="redis", args=(), module=True, taken=(), **kwargs):
        taken = {p.port for p in started} | set(taken)
        kwargs.setdefault("secrets", redis_secrets)
        proc = RedisProcess(server_folder / name, module_path if module else None, args, taken=taken, **kwargs)
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
