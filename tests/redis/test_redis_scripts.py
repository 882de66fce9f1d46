"""The room's scripts as a user runs them: -h, an idempotent setup, and
start_redis.sh start/status/stop around the book-style client.py."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fizbuz.contract import ROOT
from fizbuz.lifecycle import free_port

ROOM = ROOT / "serving" / "redis"


def run(args, env=None, timeout=600):
    # The scripts as a user runs them: the regular build, whatever the test run uses.
    base = {k: v for k, v in os.environ.items() if k != "FIZBUZ_REDIS_SANITIZE"}
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=dict(base, **(env or {}))
    )


@pytest.mark.parametrize("script", ["setup.sh", "build.sh", "start_redis.sh"])
def test_scripts_answer_help(script):
    result = run([ROOM / script, "-h"])
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_setup_is_idempotent():
    result = run([ROOM / "setup.sh"])
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout


@pytest.fixture
def run_home():
    """A folder the unprivileged user redis-server runs as can enter (pytest's
    own tmp_path sits under a 0700 folder of root's); removed after."""
    folder = Path(tempfile.mkdtemp(prefix="fizbuz-redis-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_start_status_client_stop(run_home):
    tmp_path = run_home
    env = {"FIZBUZ_REDIS_PORT": str(free_port()), "FIZBUZ_REDIS_RUN_DIR": str(tmp_path / "run")}
    port = env["FIZBUZ_REDIS_PORT"]
    script = ROOM / "start_redis.sh"
    started = run([script], env)  # no argument means start, as the README shows it
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pid = int((tmp_path / "run" / "redis.pid").read_text())
        status = run([script, "status"], env)
        assert status.returncode == 0 and f"pid {pid}" in status.stdout and "PONG" in status.stdout
        again = run([script, "start"], env)
        assert again.returncode == 0 and "already running" in again.stdout
        client = run([sys.executable, ROOM / "client.py", "--port", port, "--store", "14", "2", "4", "7"], env)
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["14 -> FizzBuzz", "2 -> Fizz", "4 -> Buzz", "7 -> 8"]
        one_x = run(
            [sys.executable, ROOM / "client.py", "--port", port, "--dialect", "1.x", "--store", "--key", "m", "1021"],
            env,
        )
        assert one_x.stdout.splitlines() == ["1021 -> 1022"], one_x.stderr
        bad = run([sys.executable, ROOM / "client.py", "--port", port, "--key", "missing", "3"], env)
        assert bad.returncode == 1 and "model key is empty" in bad.stderr
    finally:
        stopped = run([script, "stop"], env)
    assert stopped.returncode == 0 and "stopped pid" in stopped.stdout
    assert run([script, "status"], env).returncode == 3
    assert (tmp_path / "run" / "data" / "appendonlydir").is_dir() and (tmp_path / "run" / "redis.log").is_file()
