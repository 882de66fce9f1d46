"""Real redis-server / redis-sentinel processes for the Redis module's tests:
each on a free port in its own folder with its own log, started in the
foreground as our child (so we hold its PID), ready when a real condition
holds, and stopped by PID."""

import os
import subprocess
import time
from pathlib import Path

import redis

from ports import free_port

READY_SECONDS = 30
SANITIZE = os.environ.get("FIZBUZ_REDIS_SANITIZE") == "ON"


def server_env():
    """With FIZBUZ_REDIS_SANITIZE=ON the tests load the AddressSanitizer build,
    so redis-server must start with the ASan runtime preloaded; any report
    stops the server, which fails the test."""
    env = dict(os.environ)
    if SANITIZE:
        env["LD_PRELOAD"] = subprocess.check_output(["g++", "-print-file-name=libasan.so"], text=True).strip()
        # Redis and LibTorch keep globals alive at exit: leaks are the soak test's job.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


def wait_until(condition, what, seconds=READY_SECONDS, interval=0.05):
    """Poll `condition()` until it is true; fail with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds}s waiting for {what}")
        time.sleep(interval)  # a polling interval, not a readiness guess


def info(client, section):
    return client.info(section)


class RedisProcess:
    """One redis-server (or redis-sentinel with `sentinel_conf`) run by a test."""

    def __init__(self, folder, module=None, args=(), port=None, sentinel_conf=None, taken=()):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(taken)
        self.module = module
        self.args = list(args)
        self.sentinel_conf = sentinel_conf
        self.log = self.folder / "redis.log"
        self.process = None

    def command(self):
        if self.sentinel_conf is not None:
            conf = self.folder / "sentinel.conf"
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.folder}\n"
                            f"logfile {self.log}\n{self.sentinel_conf}")
            return ["redis-sentinel", str(conf)]
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", str(self.folder), "--logfile", str(self.log), "--daemonize", "no",
               "--save", "", "--appendonly", "no"]
        if self.module:
            cmd += ["--loadmodule", str(self.module)]
        return cmd + self.args

    def start(self):
        # Sanitizer reports go to stderr: keep them next to the log.
        with open(self.folder / "stderr.log", "ab") as stderr:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=stderr,
                                            cwd=self.folder, env=server_env())
        wait_until(self._answers, f"PING on port {self.port} (log: {self.log})")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"redis on port {self.port} exited with {self.process.returncode}:\n"
                                 + self.log_tail() + (self.folder / "stderr.log").read_text(errors="replace"))
        return self.client().ping()

    def client(self, **kwargs):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=60, **kwargs)

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines=30):
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, kill=False):
        """SIGTERM (Redis saves/flushes as configured and exits) or SIGKILL, by
        PID. Returns True when a SIGTERM was enough (a clean shutdown)."""
        if not self.alive():
            return False
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            return False
        return not kill and self.process.returncode == 0
