"""Start, stop or inspect a redis-server with the RedisAI-compatible module;
run through serving/redis/start_redis.sh (-h there lists the settings).

The server runs in the foreground of its own session (fizbuz.lifecycle), its
pid in $FIZBUZ_REDIS_RUN_DIR/redis.pid, its log in redis.log there, its RDB,
AOF and ACL file in data/ there; start returns once it answers PING, stop ends
it by that pid (SIGTERM: Redis saves and exits).

Nobody reaches it without a password (serving/redis/acl.py): start creates
the users' passwords in secrets/ (0700, files 0600) when missing, writes the
ACL file from them, and logs how to connect. Started by root, redis-server
runs as an unprivileged user (FIZBUZ_REDIS_RUN_AS, default redis, else
nobody) that owns data/; root keeps the secrets."""

import logging
import os
import pwd
import subprocess
import sys
from pathlib import Path

import redis

from fizbuz import settings
from fizbuz.contract import REDIS_MODULE, RUN_DIR
from fizbuz.lifecycle import LifecycleError, PidFile, check_port_free, server_cli, start_server, stop_server
from fizbuz.users import as_user, blocked_folder
from serving.redis.acl import ADMIN, RUNNER, Secrets, private_dir
from serving.redis.ready import answers_ping

HERE = Path(__file__).resolve().parent
NOT_RUNNING = 3  # what status returns when no server runs, as LSB init scripts do

log = logging.getLogger("redis")


class Settings:
    def __init__(self, env=os.environ):
        self.port = settings.value("redis_port", env)
        self.bind = settings.value("redis_bind", env)
        self.run_dir = settings.value("redis_run_dir", env) or RUN_DIR / f"redis-{self.port}"
        self.threads = settings.value("redis_threads", env)
        self.appendonly = settings.value("redis_appendonly", env)
        self.module = settings.value("redis_module", env) or REDIS_MODULE
        self.timeout = settings.value("redis_wait", env)
        self.data_dir = self.run_dir / "data"
        self.acl_file = self.data_dir / "users.acl"
        self.secrets = Secrets(settings.value("redis_secrets", env) or self.run_dir / "secrets")
        self.run_as = settings.value("redis_run_as", env) or ""
        # Redis retitles itself "redis-server BIND:PORT": the port is in both command lines.
        self.pid_file = PidFile(self.run_dir / "redis.pid", str(self.port))
        self.log_file = self.run_dir / "redis.log"

    def server_user(self):
        """(name, uid, gid) redis-server runs as: None when not started by root."""
        return unprivileged_user(self.run_as)

    def command(self, user=None):
        # No --logfile: Redis logs to stdout, which lifecycle.spawn writes to redis.log.
        command = [
            "redis-server",
            "--port",
            self.port,
            "--bind",
            self.bind,
            "--dir",
            self.data_dir,
            "--aclfile",
            self.acl_file,
            "--daemonize",
            "no",
            "--appendonly",
            self.appendonly,
            "--save",
            "3600 1 300 100 60 10000",
            "--loadmodule",
            self.module,
            "THREADS",
            self.threads,
        ]
        return as_user(command, user)

    def client(self, user=ADMIN):
        return redis.Redis(
            host=self.bind, port=self.port, socket_timeout=10, decode_responses=True, **self.secrets.credentials(user)
        )


def unprivileged_user(name=""):
    """(name, uid, gid) of the user redis-server runs as when started by root
    (`name`, else redis, else nobody); None when we are not root (it then
    runs as its caller). Never root: it runs model code."""
    if os.geteuid() != 0:
        return None
    names = [name] if name else ["redis", "nobody"]
    for candidate in names:
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise LifecycleError(
                f"FIZBUZ_REDIS_RUN_AS={candidate} is root: redis-server runs model code, never as root"
            )
        return candidate, entry.pw_uid, entry.pw_gid
    raise LifecycleError(f"no user {' or '.join(names)} to run redis-server as (set FIZBUZ_REDIS_RUN_AS)")


def prepare_folders(settings, user):
    """The run folder (log, pid), secrets/ (ours, 0700) and data/ (the server
    user's, 0700), and the ACL file redis-server reads."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.secrets.ensure()
    owner = None if user is None else (user[1], user[2])
    private_dir(settings.data_dir, owner)
    if user is not None:
        blocked = blocked_folder(user, settings.data_dir.parent, Path(settings.module).parent)
        if blocked is not None:
            raise LifecycleError(
                f"redis-server runs as {user[0]}, who cannot enter {blocked}: "
                f"open it (chmod o+x) or choose another FIZBUZ_REDIS_RUN_DIR"
            )
    # Rewritten at every start from the password files: they are the source of truth.
    settings.secrets.write_acl(settings.acl_file, owner)


def how_to_connect(settings):
    folder = settings.secrets.folder
    log.info(
        "users: %s (store/delete models, config) and %s (tensors and runs); passwords in %s (%s.pass, %s.pass, 0600)",
        ADMIN,
        RUNNER,
        folder,
        ADMIN,
        RUNNER,
    )
    log.info(
        'connect: REDISCLI_AUTH="$(cat %s)" redis-cli -h %s -p %d --user %s',
        settings.secrets.path(RUNNER),
        settings.bind,
        settings.port,
        RUNNER,
    )
    log.info(
        "book client: .venv/bin/python serving/redis/client.py --port %d --secrets %s --store 14", settings.port, folder
    )


def start(settings):
    running = settings.pid_file.process()
    if running is not None:
        log.info("already running (pid %d) on %s:%d", running.pid, settings.bind, settings.port)
        return 0
    check_port_free(settings.port, "redis-server", settings.bind, hint=" with FIZBUZ_REDIS_PORT")
    # Installs redis and builds the module when needed; a no-op otherwise.
    subprocess.run([HERE / "setup.sh"], check=True)
    user = settings.server_user()
    prepare_folders(settings, user)
    process = start_server(
        settings.command(user),
        settings.pid_file,
        settings.log_file,
        ready=lambda: answers_ping(settings.client(RUNNER)),
        what=f"PING on {settings.bind}:{settings.port}",
        timeout=settings.timeout,
    )
    log.info(
        "redis-server with the module on %s:%d (pid %d as %s, folder %s)",
        settings.bind,
        settings.port,
        process.pid,
        user[0] if user else "you",
        settings.run_dir,
    )
    how_to_connect(settings)
    return 0


def stop(settings):
    return stop_server(settings.pid_file, "redis-server", grace=settings.timeout)


def status(settings):
    process = settings.pid_file.process()
    if process is None:
        print(f"not running (folder {settings.run_dir})")
        return NOT_RUNNING
    r = settings.client()
    print(
        f"running: pid {process.pid} on {settings.bind}:{settings.port}, folder {settings.run_dir}, "
        f"PING: {'PONG' if r.ping() else 'no answer'}"
    )
    persistence = r.info("persistence")
    for key in ("rdb_last_save_time", "aof_enabled", "aof_last_write_status"):
        if key in persistence:
            print(f"{key}:{persistence[key]}")
    for module in r.module_list():
        print(" ".join(f"{key} {value}" for key, value in module.items()))
    print(f"keys: {r.dbsize()}")
    return 0


def main(argv=None):
    return server_cli(
        argv,
        "serving/redis/start_redis.sh",
        __doc__,
        {"start": start, "stop": stop, "status": status},
        Settings,
        errors=(redis.RedisError, subprocess.CalledProcessError, OSError),
    )  # OSError: e.g. secrets not ours to read


if __name__ == "__main__":
    sys.exit(main())
