"""Real redis-server / redis-sentinel processes for the Redis module's tests:
each on a free port in its own folder with its own log, started through
fizbuz.lifecycle (own session, pid file, ready when PING is answered) and
stopped by PID. Servers run with the ACL users of serving/redis/acl.py (the
default user off); secrets go in 0600 files, never on a command line. When
the tests run as root, servers run as the unprivileged user start_redis.sh
uses (setpriv), in folders that user owns under `server_home()`."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from fizbuz import lifecycle
from fizbuz.lifecycle import PidFile, end_family, free_port, is_alive, start_server, tail
from serving.redis.acl import ADMIN, REPLICA, write_private
from serving.redis.cli import as_user, unprivileged_user
from serving.redis.ready import NOT_YET, answers_ping

READY_SECONDS = 30
STOP_SECONDS = 30
SANITIZE = os.environ.get("FIZBUZ_REDIS_SANITIZE") == "ON"
# Who the servers run as (None: the caller, when the tests do not run as root).
SERVER_USER = unprivileged_user(os.environ.get("FIZBUZ_REDIS_RUN_AS") or "")
OWNER = None if SERVER_USER is None else SERVER_USER[1:]


def server_home():
    """A fresh folder for servers' folders that their user can enter (pytest's
    tmp_path sits under a 0700 folder of root's); the caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix="fizbuz-redis-tests-"))
    folder.chmod(0o755)
    return folder


def remove_home(folder):
    shutil.rmtree(folder, ignore_errors=True)


def give(path):
    """Hand `path` to the servers' user (a no-op when we are not root)."""
    if OWNER is not None:
        os.chown(path, *OWNER)
    return path


def server_env(sanitized=SANITIZE):
    """With FIZBUZ_REDIS_SANITIZE=ON (or `sanitized`) the tests load the
    AddressSanitizer build, so redis-server must start with the ASan runtime
    preloaded; any report stops the server, which fails the test."""
    env = dict(os.environ)
    if sanitized:
        env["LD_PRELOAD"] = subprocess.check_output(["g++", "-print-file-name=libasan.so"], text=True).strip()
        # Redis and LibTorch keep globals alive at exit: leaks are the soak test's job.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


def wait_until(condition, what, seconds=READY_SECONDS):
    """lifecycle.wait_until with the tests' bound; Redis's "not yet" errors count as false."""
    return lifecycle.wait_until(condition, seconds, what, interval=0.05, not_yet=NOT_YET)


class RedisProcess:
    """One redis-server (or redis-sentinel with `sentinel_conf`) run by a test.
    A server gets the users of `secrets` (an acl.Secrets) and, as any node
    may become a replica, the replica user's credentials for its master."""

    def __init__(
        self, folder, module=None, args=(), port=None, sentinel_conf=None, taken=(), secrets=None, sanitized=SANITIZE
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        give(self.folder)  # RDB, AOF, nodes.conf, a sentinel's rewritten config
        self.port = port or free_port(taken)
        self.module = module
        self.args = list(args)
        self.sentinel_conf = sentinel_conf
        self.secrets = secrets
        self.sanitized = sanitized
        if sentinel_conf is None and secrets is None:
            raise ValueError("a redis-server in the tests always has ACL users: pass secrets")
        self.log = self.folder / "redis.log"
        # Redis rewrites its command line to "redis-server 127.0.0.1:PORT", so
        # the port is what both the started and the running command line hold.
        self.pid_file = PidFile(self.folder / "redis.pid", marker=str(self.port))
        self.process = None

    def command(self):
        if self.sentinel_conf is not None:
            conf = self.folder / "sentinel.conf"
            # Sentinel rewrites its file (as does Redis a config's): a private one, it holds passwords.
            write_private(
                conf,
                f"port {self.port}\nbind 127.0.0.1\ndir {self.folder}\nlogfile {self.log}\n" + self.sentinel_conf,
                OWNER,
            )
            # --port as well: it puts the marker in the command line before Redis retitles it.
            return as_user(["redis-sentinel", str(conf), "--port", str(self.port)], SERVER_USER)
        acl = self.secrets.write_acl(self.folder / "users.acl", OWNER)
        conf = write_private(
            self.folder / "redis.conf",
            f"aclfile {acl}\nmasteruser {REPLICA}\nmasterauth {self.secrets.password(REPLICA)}\n",
            OWNER,
        )
        cmd = [
            "redis-server",
            str(conf),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.log),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        if self.module:
            cmd += ["--loadmodule", str(self.module)]
        return as_user(cmd + self.args, SERVER_USER)

    def start(self):
        # stdout/stderr (sanitizer reports) go to stderr.log, beside Redis's own log.
        self.process = start_server(
            self.command(),
            self.pid_file,
            self.folder / "stderr.log",
            ready=lambda: answers_ping(self.client()),
            what=f"PING on port {self.port} (log: {self.log})",
            timeout=READY_SECONDS,
            env=server_env(self.sanitized),
            cwd=self.folder,
        )
        return self

    def client(self, user=ADMIN, **kwargs):
        """A client as `user` (None: no credentials, as a sentinel's own clients are)."""
        if self.sentinel_conf is None and user is not None:
            kwargs.update(self.secrets.credentials(user))
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60, **kwargs)

    def alive(self):
        return self.process is not None and is_alive(self.process)

    def log_tail(self, lines=30):
        return tail(self.log, lines)

    def stop(self, kill=False):
        """SIGTERM (Redis saves/flushes as configured and exits) or SIGKILL, by
        PID. Returns True when a SIGTERM was enough (a clean shutdown)."""
        if not self.alive():
            return False
        # Our own child object: end_family's wait records its exit code on it.
        end_family(self.process, grace=0 if kill else STOP_SECONDS)
        self.pid_file.remove()
        return not kill and self.process.returncode == 0
