"""Run the front door's own nginx: its prefix holds the config, pid, temp and logs.

Nothing here touches the system's nginx service: the master is started and
stopped through fizbuz.lifecycle by the pid file in the prefix, and (after a
kill -9 of the master) its orphaned workers are found by the log files they
hold open under the prefix.
"""

import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import psutil

from fizbuz.lifecycle import (
    LifecycleError,
    PidFile,
    check_port_free,
    end_processes,
    is_alive,
    port_is_free,
    processes_under,
    start_server,
    wait_until,
)
from fizbuz.private_files import write_private
from serving.front import config, tokens
from fizbuz.errors import FizbuzError

log = logging.getLogger(__name__)


class NginxError(FizbuzError):
    pass


def find_nginx():
    """nginx's path, or None (sbin is not on every user's PATH)."""
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )


def nginx_binary():
    found = find_nginx()
    if found is None:
        raise NginxError("nginx is not installed: run serving/front/setup_nginx.sh (apt-get install nginx)")
    return found


def foreground_command(prefix, conf, error_log):
    """nginx with its own prefix, config and error log, in the foreground
    ("daemon off"): the master stays the process fizbuz.lifecycle spawned (own
    session, pid file), so it is stopped like any other server."""
    return [nginx_binary(), "-p", f"{prefix}/", "-c", str(conf), "-e", str(error_log), "-g", "daemon off;"]


class FrontDoor:
    def __init__(self, prefix):
        self.prefix = Path(prefix).resolve()
        self.conf = self.prefix / "nginx.conf"
        # nginx writes it too (the config's `pid`): the same pid, as the master does not daemonise.
        self.pid_file = PidFile(self.prefix / "nginx.pid", "nginx")
        self.tokens_map = self.prefix / "tokens.map"
        self.logs = self.prefix / "logs"
        self.access_log = self.logs / "access.log"
        self.error_log = self.logs / "error.log"
        self.console_log = self.logs / "console.log"
        # Where /ready's cache lives when nginx's workers cannot reach the prefix (ready_cache()).
        self.ready_cache_record = self.prefix / "ready-cache.path"

    def ready_cache(self):
        """The folder of /ready's cache, which nginx's workers write: temp/ready
        under the prefix when they can reach it (nginx not run by root, or every
        folder above open to others); else a private folder made for it in /tmp
        (mkdtemp: a name no other user can guess or plant), which nginx's master
        hands to the workers' user; stop() removes it."""
        inside = self.prefix / "temp" / "ready"
        reachable = all(folder.stat().st_mode & stat.S_IXOTH for folder in (self.prefix, *self.prefix.parents))
        if os.geteuid() != 0 or reachable:
            return inside
        if self.ready_cache_record.exists():
            folder = Path(self.ready_cache_record.read_text().strip())
            if folder.is_dir() and not folder.is_symlink():
                return folder
        folder = Path(tempfile.mkdtemp(prefix="fizbuz-ready-"))
        self.ready_cache_record.write_text(f"{folder}\n")
        return folder

    # ------------------------------------------------------------ files
    def write(self, settings, token_file):
        """Render config and token map, and have nginx check them before use."""
        for folder in (self.prefix, self.logs, self.prefix / "temp"):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)  # workers run as an unprivileged user
        # Read by the master only; 0600 from its first byte.
        write_private(self.tokens_map, tokens.render_map(tokens.read(token_file)))
        self.conf.write_text(config.render(settings, self.prefix, self.ready_cache()))
        checked = subprocess.run(
            [nginx_binary(), "-p", f"{self.prefix}/", "-c", str(self.conf), "-e", str(self.error_log), "-t"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if checked.returncode != 0:
            raise NginxError(f"nginx rejects the rendered config {self.conf}:\n{checked.stderr.strip()}")

    # ------------------------------------------------------------ processes
    def master(self):
        return self.pid_file.process()

    def workers(self):
        master = self.master()
        try:
            return master.children() if master else []
        except psutil.Error:
            return []

    def workers_cpu_seconds(self):
        """User + system CPU seconds the running workers have used (benchmarks
        read it around a run: nginx's CPU per request)."""
        total = 0.0
        for worker in self.workers():
            times = worker.cpu_times()
            total += times.user + times.system
        return total

    def leftovers(self):
        """nginx processes holding files under our prefix: workers orphaned by a killed master."""
        return processes_under(self.prefix, names=("nginx",), open_files=True)

    def running(self):
        return self.master() is not None

    # ------------------------------------------------------------ life cycle
    def start(self, listen, timeout=30):
        if self.running():
            return self.master().pid
        end_processes(self.leftovers())  # they would still hold the port
        host, port = listen.rsplit(":", 1)
        # Ready: it listens (its port cannot be bound); the hosts may still be starting.
        try:
            check_port_free(int(port), "the front door", host)
            master = start_server(
                foreground_command(self.prefix, self.conf, self.error_log),
                self.pid_file,
                self.console_log,
                ready=lambda: not port_is_free(int(port), host),
                what=f"nginx to listen on {listen}",
                timeout=timeout,
            )
        except LifecycleError as error:
            raise NginxError(f"nginx did not start: {error}\n(see {self.error_log})") from None
        log.info("front door nginx is up (pid %s) on %s", master.pid, listen)
        return master.pid

    def reload(self, timeout=60):
        """Graceful: new workers take new connections, old ones finish their
        requests and exit. Returns once no old worker is left."""
        master = self.master()
        if master is None:
            raise NginxError("the front door is not running")
        old = self.workers()
        master.send_signal(signal.SIGHUP)

        def settled():
            current = {p.pid for p in self.workers()}
            return bool(current - {p.pid for p in old}) and not any(is_alive(p) for p in old)

        try:
            wait_until(settled, timeout, "nginx's old workers to finish and exit after the reload", interval=0.05)
        except LifecycleError as error:
            raise NginxError(str(error)) from None

    def stop(self, grace=10):
        master = self.master()
        if master is not None:
            # SIGQUIT first: a graceful stop that finishes the requests in flight;
            # then the pid file's TERM-then-KILL of the whole family.
            master.send_signal(signal.SIGQUIT)
            try:
                master.wait(grace)
            except psutil.Error:
                pass
        self.pid_file.stop(grace=grace)
        end_processes(self.leftovers())
        if self.ready_cache_record.exists():  # the /ready cache made outside the prefix
            shutil.rmtree(self.ready_cache_record.read_text().strip(), ignore_errors=True)
            self.ready_cache_record.unlink()
