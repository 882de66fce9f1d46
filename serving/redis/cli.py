"""Start, stop or inspect a redis-server with the RedisAI-compatible module;
run through serving/redis/start_redis.sh (-h there lists the settings).

The server runs in the foreground of its own session (fizbuz.lifecycle), its
pid in $FIZBUZ_REDIS_RUN_DIR/redis.pid, its log in redis.log there; start
returns once it answers PING, stop ends it by that pid (SIGTERM: Redis saves
and exits)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import redis

from fizbuz.contract import REDIS_MODULE, RUN_DIR
from fizbuz.lifecycle import PidFile, check_port_free, server_cli, start_server, stop_server
from serving.redis.ready import answers_ping

HERE = Path(__file__).resolve().parent
NOT_RUNNING = 3  # what status returns when no server runs, as LSB init scripts do

log = logging.getLogger("redis")


class Settings:
    def __init__(self, env=os.environ):
        self.port = int(env.get("FIZBUZ_REDIS_PORT") or 6379)
        self.bind = env.get("FIZBUZ_REDIS_BIND") or "127.0.0.1"
        self.run_dir = Path(env.get("FIZBUZ_REDIS_RUN_DIR") or RUN_DIR / f"redis-{self.port}")
        self.threads = int(env.get("FIZBUZ_REDIS_THREADS") or 1)
        self.appendonly = env.get("FIZBUZ_REDIS_APPENDONLY") or "yes"
        self.module = env.get("FIZBUZ_REDIS_MODULE") or REDIS_MODULE
        self.timeout = float(env.get("FIZBUZ_REDIS_WAIT") or 30)
        # Redis retitles itself "redis-server BIND:PORT": the port is in both command lines.
        self.pid_file = PidFile(self.run_dir / "redis.pid", str(self.port))
        self.log_file = self.run_dir / "redis.log"

    def command(self):
        # No --logfile: Redis logs to stdout, which lifecycle.spawn writes to redis.log.
        return ["redis-server", "--port", self.port, "--bind", self.bind, "--dir", self.run_dir,
                "--daemonize", "no", "--appendonly", self.appendonly, "--save", "3600 1 300 100 60 10000",
                "--loadmodule", self.module, "THREADS", self.threads]

    def client(self):
        return redis.Redis(host=self.bind, port=self.port, socket_timeout=10, decode_responses=True)


def start(settings):
    running = settings.pid_file.process()
    if running is not None:
        log.info("already running (pid %d) on %s:%d", running.pid, settings.bind, settings.port)
        return 0
    check_port_free(settings.port, "redis-server", settings.bind, hint=" with FIZBUZ_REDIS_PORT")
    # Installs redis and builds the module when needed; a no-op otherwise.
    subprocess.run([HERE / "setup.sh"], check=True)
    process = start_server(settings.command(), settings.pid_file, settings.log_file,
                           ready=lambda: answers_ping(settings.client()),
                           what=f"PING on {settings.bind}:{settings.port}", timeout=settings.timeout)
    log.info("redis-server with the module on %s:%d (pid %d, folder %s)",
             settings.bind, settings.port, process.pid, settings.run_dir)
    return 0


def stop(settings):
    return stop_server(settings.pid_file, "redis-server", grace=settings.timeout)


def status(settings):
    process = settings.pid_file.process()
    if process is None:
        print(f"not running (folder {settings.run_dir})")
        return NOT_RUNNING
    r = settings.client()
    print(f"running: pid {process.pid} on {settings.bind}:{settings.port}, folder {settings.run_dir}, "
          f"PING: {'PONG' if r.ping() else 'no answer'}")
    persistence = r.info("persistence")
    for key in ("rdb_last_save_time", "aof_enabled", "aof_last_write_status"):
        if key in persistence:
            print(f"{key}:{persistence[key]}")
    for module in r.module_list():
        print(" ".join(f"{key} {value}" for key, value in module.items()))
    print(f"keys: {r.dbsize()}")
    return 0


def main(argv=None):
    return server_cli(argv, "serving/redis/start_redis.sh", __doc__,
                      {"start": start, "stop": stop, "status": status}, Settings,
                      errors=(redis.RedisError, subprocess.CalledProcessError))


if __name__ == "__main__":
    sys.exit(main())
