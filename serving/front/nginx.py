"""Run the front door's own nginx: its prefix holds the config, pid, temp and logs.

Nothing here touches the system's nginx service: every process is found by
the pid file in the prefix, or (after a kill -9 of the master) by the log
files it holds open under the prefix.
"""

import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from serving.front import config, tokens

log = logging.getLogger(__name__)


class NginxError(Exception):
    pass


def wait_for(condition, timeout, what, interval=0.05):
    """Poll a real condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise NginxError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # poll interval, not a readiness guess


def nginx_binary():
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise NginxError("nginx is not installed: run serving/front/setup_nginx.sh (apt-get install nginx)")
    return found


class FrontDoor:
    def __init__(self, prefix):
        self.prefix = Path(prefix).resolve()
        self.conf = self.prefix / "nginx.conf"
        self.pid_file = self.prefix / "nginx.pid"
        self.tokens_map = self.prefix / "tokens.map"
        self.logs = self.prefix / "logs"
        self.access_log = self.logs / "access.log"
        self.error_log = self.logs / "error.log"

    # ------------------------------------------------------------ files
    def write(self, settings, token_file):
        """Render config and token map, and have nginx check them before use."""
        for folder in (self.prefix, self.logs, self.prefix / "temp"):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)  # workers run as an unprivileged user
        self.tokens_map.write_text(tokens.render_map(tokens.read(token_file)))
        self.tokens_map.chmod(0o600)  # read by the master (root) only
        self.conf.write_text(config.render(settings, self.prefix))
        checked = self._nginx("-t", capture=True)
        if checked.returncode != 0:
            raise NginxError(f"nginx rejects the rendered config {self.conf}:\n{checked.stderr.strip()}")

    def _nginx(self, *args, capture=False):
        command = [nginx_binary(), "-p", f"{self.prefix}/", "-c", str(self.conf), "-e", str(self.error_log), *args]
        return subprocess.run(command, capture_output=capture, text=True, timeout=60, stdin=subprocess.DEVNULL)

    # ------------------------------------------------------------ processes
    def master(self):
        try:
            process = psutil.Process(int(self.pid_file.read_text().split()[0]))
            if process.status() != psutil.STATUS_ZOMBIE and "nginx" in process.name():
                return process
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def workers(self):
        master = self.master()
        try:
            return master.children() if master else []
        except psutil.Error:
            return []

    def leftovers(self):
        """nginx processes holding files under our prefix: workers orphaned by a killed master."""
        found = []
        for process in psutil.process_iter(["name"]):
            if process.info["name"] != "nginx":
                continue
            try:
                if any(f.path.startswith(f"{self.prefix}/") for f in process.open_files()):
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def running(self):
        return self.master() is not None

    # ------------------------------------------------------------ life cycle
    def start(self, listen, timeout=30):
        if self.running():
            return self.master().pid
        self._kill_leftovers()
        self.pid_file.unlink(missing_ok=True)
        started = self._nginx(capture=True)  # daemonises: the master writes the pid file
        if started.returncode != 0:
            raise NginxError(f"nginx did not start:\n{started.stderr.strip()}\n(see {self.error_log})")
        master = wait_for(self.master, timeout, "the nginx pid file")
        host, port = listen.rsplit(":", 1)
        wait_for(lambda: port_open(host, int(port)), timeout, f"nginx to listen on {listen}")
        log.info("front door nginx is up (pid %s) on %s", master.pid, listen)
        return master.pid

    def reload(self, timeout=60):
        """Graceful: new workers take new connections, old ones finish their
        requests and exit. Returns once no old worker is left."""
        master = self.master()
        if master is None:
            raise NginxError("the front door is not running")
        old = {p.pid for p in self.workers()}
        master.send_signal(signal.SIGHUP)

        def settled():
            current = {p.pid for p in self.workers()}
            alive_old = {pid for pid in old if psutil.pid_exists(pid) and _not_zombie(pid)}
            return bool(current - old) and not alive_old

        wait_for(settled, timeout, "nginx's old workers to finish and exit after the reload")

    def stop(self, grace=10):
        master = self.master()
        if master is not None:
            family = [master] + self.workers()
            master.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
            _, alive = psutil.wait_procs(family, timeout=grace)
            for process in alive:
                _kill(process)
        self._kill_leftovers()
        self.pid_file.unlink(missing_ok=True)

    def _kill_leftovers(self):
        for process in self.leftovers():
            _kill(process)


def _kill(process):
    try:
        process.kill()
        process.wait(10)
    except psutil.Error:
        pass


def _not_zombie(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
