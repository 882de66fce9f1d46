"""Nobody stores a model (code that redis-server runs) without the admin's
password (issue 22, item 1). The server is started as a user starts it
(start_redis.sh, here as root) and reached as another local user would
(`runuser -u nobody`); the runner's credentials answer numbers but cannot
store, delete, restore or reconfigure anything; redis-server runs
unprivileged; every secret is 0600 from its creation."""

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis

from fizbuz.contract import ROOT
from fizbuz.lifecycle import free_port
from fizbuz_codec import true_class
from redis_inputs import encoder
from serving.redis import acl
from serving.redis.acl import ADMIN, RUNNER, Secrets

SCRIPT = ROOT / "serving" / "redis" / "start_redis.sh"


def script_env(env):
    base = {k: v for k, v in os.environ.items() if k != "FIZBUZ_REDIS_SANITIZE"}
    return dict(base, **env)


@pytest.fixture(scope="module")
def started():
    """start_redis.sh in a run folder the server's user can enter; stopped after."""
    home = Path(tempfile.mkdtemp(prefix="fizbuz-redis-access-"))
    home.chmod(0o755)
    env = script_env(
        {
            "FIZBUZ_REDIS_PORT": str(free_port()),
            "FIZBUZ_REDIS_RUN_DIR": str(home / "run"),
            "FIZBUZ_REDIS_APPENDONLY": "no",
        }
    )
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=600, env=env)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield env, home / "run", int(env["FIZBUZ_REDIS_PORT"]), result.stdout
    finally:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(home, ignore_errors=True)


def as_nobody(*command, stdin=None):
    return subprocess.run(["runuser", "-u", "nobody", "--", *command], stdin=stdin, capture_output=True, timeout=60)


def client(port, run_dir, user):
    return redis.Redis(port=port, **Secrets(run_dir / "secrets").credentials(user))


def test_a_local_user_without_credentials_cannot_store_a_model(started, torchscript_model):
    _, run_dir, port, _ = started
    for command in (["AI.MODELSET", "stolen", "TORCH", "CPU"], ["AI.MODELSTORE", "stolen", "TORCH", "CPU", "BLOB"]):
        with open(torchscript_model, "rb") as model:
            attempt = as_nobody("redis-cli", "-p", str(port), "-x", *command, stdin=model)
        assert b"NOAUTH" in attempt.stdout + attempt.stderr, attempt
    # Nor by guessing the default user's empty password, nor as admin without its password.
    for user in ("default", ADMIN):
        attempt = as_nobody("redis-cli", "-p", str(port), "--user", user, "--pass", "", "--no-auth-warning", "PING")
        assert b"PONG" not in attempt.stdout, attempt
    assert client(port, run_dir, ADMIN).exists("stolen") == 0
    # The passwords and the ACL file are closed to other users.
    for secret in (
        run_dir / "secrets" / "admin.pass",
        run_dir / "secrets" / "runner.pass",
        run_dir / "data" / "users.acl",
    ):
        attempt = as_nobody("cat", str(secret))
        assert attempt.returncode != 0 and attempt.stdout == b"", secret


def test_the_runner_answers_numbers_but_cannot_store_delete_or_reconfigure(started, model_blob):
    _, run_dir, port, _ = started
    admin, runner = client(port, run_dir, ADMIN), client(port, run_dir, RUNNER)
    admin.execute_command("AI.MODELSTORE", "model", "TORCH", "CPU", "BLOB", model_blob)
    runner.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 10, "BLOB", encoder(15).tobytes())
    assert runner.execute_command("AI.MODELEXECUTE", "model", "INPUTS", 1, "a", "OUTPUTS", 1, "out") == b"OK"
    _, _, buf = runner.execute_command("AI.TENSORGET", "out", "BLOB")
    assert np.frombuffer(buf, np.float32).argmax() == true_class(15)
    dump = admin.dump("model")
    refused = [
        ["AI.MODELSTORE", "mine", "TORCH", "CPU", "BLOB", model_blob],
        ["AI.MODELSET", "model", "TORCH", "CPU", model_blob],
        ["AI.MODELDEL", "model"],
        ["AI.MODELGET", "model", "BLOB"],
        ["RESTORE", "mine", 0, dump],  # a DUMP of a model is a model
        ["AI.CONFIG", "MODEL_CHUNK_SIZE", 10],
        ["CONFIG", "SET", "dir", "/tmp"],
        ["MODULE", "LOAD", "/tmp/x.so"],
        ["ACL", "SETUSER", RUNNER, "+@all"],
        ["DEL", "model"],
        ["FLUSHALL"],
        ["RENAME", "model", "x"],
        ["SET", "model", "x"],
        ["DEBUG", "RELOAD"],
        ["SHUTDOWN"],
        ["REPLICAOF", "127.0.0.1", "1"],
        ["EVAL", "return 1", 0],
    ]
    for command in refused:
        # NOPERM; MODULE and DEBUG are also off for everyone (Redis 7's enable-*-command).
        with pytest.raises(redis.ResponseError, match="no permissions|not allowed"):
            runner.execute_command(*command)
    assert admin.exists("mine") == 0
    assert admin.execute_command("AI.MODELGET", "model", "BLOB") == [b"blob", model_blob]


def test_redis_runs_unprivileged_and_the_secrets_are_private(started):
    env, run_dir, port, stdout = started
    pid = int((run_dir / "redis.pid").read_text())
    server = psutil.Process(pid)
    assert server.name() == "redis-server"
    uid = server.uids().real
    assert uid != 0 and server.uids().effective != 0
    assert pwd.getpwuid(uid).pw_name == (os.environ.get("FIZBUZ_REDIS_RUN_AS") or "redis")
    data = (run_dir / "data").stat()
    assert data.st_uid == uid and stat.S_IMODE(data.st_mode) == 0o700
    secrets = run_dir / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700 and secrets.stat().st_uid == os.geteuid()
    for user in acl.USERS:
        mode = (secrets / f"{user}.pass").stat()
        assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == os.geteuid()
    assert stat.S_IMODE((run_dir / "data" / "users.acl").stat().st_mode) == 0o600
    # start printed how to connect, and no password.
    assert "--user runner" in stdout and str(secrets) in stdout
    for user in acl.USERS:
        assert Secrets(secrets).password(user) not in stdout
    assert Secrets(secrets).password(ADMIN) not in (run_dir / "redis.log").read_text()


def test_secret_files_are_0600_from_creation_and_never_chmod_ed(tmp_path, monkeypatch):
    """With a umask that opens everything, the files are still 0600: their mode
    comes from os.open, not from a chmod after writing (which is refused here)."""

    def no_chmod(*args, **kwargs):
        raise AssertionError("a secret file was chmod'ed after it was written")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    old = os.umask(0)
    try:
        created = []
        real_open = os.open

        def recording_open(path, flags, mode=0o777, **kwargs):
            if flags & os.O_CREAT:
                created.append((Path(path).name, flags & os.O_EXCL, mode))
            return real_open(path, flags, mode, **kwargs)

        monkeypatch.setattr(os, "open", recording_open)
        (tmp_path / "s").mkdir(mode=0o700)
        s = Secrets(tmp_path / "s").ensure()
        s.write_acl(tmp_path / "users.acl")
    finally:
        os.umask(old)
    assert len(created) == len(acl.USERS) + 1
    assert all(excl and mode == 0o600 for _, excl, mode in created), created
    for path in [*(tmp_path / "s").iterdir(), tmp_path / "users.acl"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    text = (tmp_path / "users.acl").read_text()
    assert "user default off" in text and s.password(ADMIN) not in text


def test_the_tests_own_servers_are_not_root_either(server):
    process = psutil.Process(server.process.pid)
    assert process.name() == "redis-server"
    assert process.uids().real != 0 and process.uids().effective != 0
