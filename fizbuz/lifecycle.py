"""One server lifecycle for every server the project starts (MMS, gunicorn,
netron, nginx, redis): free ports, port checks, pid files with stale clean-up,
bounded readiness polls, and stopping a server's whole process family.

A server is only ever stopped through its own pid file (and only when the pid
still runs the program named there), so a server someone else runs on this
machine is never touched.
"""

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from fizbuz import logs
from fizbuz.errors import FizbuzError

log = logging.getLogger(__name__)

# MMS 1.0.8 refuses ports from 32767 up, so the kernel's ephemeral range
# (32768+) is no use: tests and benches pick random ports below it.
FREE_PORT_LOW, FREE_PORT_HIGH = 20000, 32000


class LifecycleError(FizbuzError):
    """A failure the user can act on; printed without a traceback."""


# --------------------------------------------------------------------------- ports


def port_is_free(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_port_free(port, what, host="127.0.0.1", hint=""):
    """Raise LifecycleError when `port` cannot be bound on `host`."""
    if not port_is_free(port, host):
        raise LifecycleError(
            f"port {port} ({what}) is already in use on {host}: stop what listens there, or choose another port{hint}"
        )


def free_port(taken=(), host="127.0.0.1"):
    """A port in FREE_PORT_LOW..FREE_PORT_HIGH that nothing listens on now and not in `taken`."""
    for _ in range(200):
        port = random.randrange(FREE_PORT_LOW, FREE_PORT_HIGH)
        if port not in taken and port_is_free(port, host):
            return port
    raise LifecycleError(f"no free port found in {FREE_PORT_LOW}..{FREE_PORT_HIGH}")


def free_ports(count, host="127.0.0.1"):
    ports = []
    for _ in range(count):
        ports.append(free_port(taken=ports, host=host))
    return ports


# --------------------------------------------------------------------------- waiting


def wait_until(condition, timeout, what, interval=0.1, alive=None, not_yet=()):
    """Poll `condition` until it returns a truthy value (returned) or `timeout`
    seconds pass (LifecycleError). `alive`, when given, is polled too: the wait
    ends early when the server it watches has exited. Exceptions in `not_yet`
    raised by `condition` count as false (a server still starting refuses
    connections or answers "loading")."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except not_yet:
            result = None
        if result:
            return result
        if alive is not None and not alive():
            raise LifecycleError(f"the server exited while waiting for {what}")
        if time.monotonic() >= deadline:
            raise LifecycleError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)  # a poll interval, not a readiness guess


# --------------------------------------------------------------------------- processes


def end_family(process, grace=10.0):
    """Stop `process` (a psutil.Process or a pid) and all its descendants:
    SIGTERM and up to `grace` seconds to exit (none with grace=0), then SIGKILL
    for what is left. Returns how many descendants there were."""
    try:
        if not isinstance(process, psutil.Process):
            process = psutil.Process(process)
        family = process.children(recursive=True) + [process]
    except psutil.Error:
        return 0
    survivors = family
    if grace > 0:
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.terminate()
        _, survivors = psutil.wait_procs(family, timeout=grace)
    for member in survivors:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(survivors, timeout=10)
    return len(family) - 1


def live_process(pid, marker=None):
    """The running process `pid`, or None: gone, a zombie, or (with `marker`)
    a pid reused by a program whose command line does not contain `marker`."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if marker is not None and marker not in " ".join(process.cmdline()):
            return None
        return process
    except psutil.Error:
        return None


def processes_under(folder, names=(), open_files=False):
    """Processes whose name starts with one of `names` (any name when empty)
    and whose command line (or, with open_files, an open file) lies under
    `folder`: what a server killed -9 leaves behind (orphaned workers, a
    half-started server), found without a pid file. Never this process or its
    parents."""
    prefix = f"{Path(folder).resolve()}/"
    mine = {process.pid for process in psutil.Process().parents()} | {psutil.Process().pid}
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        name = process.info["name"] or ""
        if process.pid in mine or (names and not name.startswith(tuple(names))):
            continue
        try:
            paths = [f.path for f in process.open_files()] if open_files else process.info["cmdline"] or []
        except psutil.Error:
            continue
        if any(prefix in path for path in paths):
            found.append(process)
    return found


def end_processes(processes, grace=0.0):
    """end_family for each of `processes` (strays found by processes_under)."""
    for process in processes:
        end_family(process, grace=grace)


class JsonState:
    """load/save/require of a run folder's JSON state file (self.dir, self.state_file).
    Written whole (a temp file renamed over it), so a reader after a crash finds the
    old state or the new one, never half of one. `what` and `error` name it in messages."""

    what = "server"
    error = LifecycleError

    def load(self):
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def save(self, state):
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(self.state_file)

    def require(self):
        state = self.load()
        if state is None:
            raise self.error(f"no {self.what} in {self.dir}: start one first")
        return state


class PidFile:
    """A server's pid file; `marker` is a piece of the server's command line
    that tells its process from an unrelated one that reuses the pid."""

    def __init__(self, path, marker):
        self.path = Path(path)
        self.marker = marker

    def read(self):
        try:
            return int(self.path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def write(self, pid):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def remove(self):
        self.path.unlink(missing_ok=True)

    def process(self):
        return live_process(self.read(), self.marker)

    def is_stale(self):
        """A pid file whose server is gone (a crash, a kill -9)."""
        return self.path.exists() and self.process() is None

    def stop(self, grace=10.0):
        """Stop the server and its family; returns its pid, or None when none ran.
        A stale pid file is removed either way."""
        process = self.process()
        if process is not None:
            end_family(process, grace=grace)
        self.remove()
        return process.pid if process is not None else None


def open_log(path):
    """`path` opened for appending, never through a symbolic link: a server run
    as an unprivileged user owns its logs folder, and a link it put there must
    not make root append to (or, in `tail`, read out) a file of root's."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644), "ab")


def spawn(command, log_path, env=None, cwd=None, pid_file=None):
    """Start `command` in a session of its own (so a Ctrl-C meant for the caller
    does not reach it and its family can be ended as one), output to `log_path`.
    Returns the psutil.Process; the pid goes to `pid_file` when given."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open_log(log_path) as output:
        # psutil.Popen: one object that is both the child (reaped on exit) and a psutil.Process.
        process = psutil.Popen(
            [str(part) for part in command],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    if pid_file is not None:
        pid_file.write(process.pid)
    return process


def is_alive(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_server(command, pid_file, log_path, ready, what, timeout=60.0, env=None, cwd=None):
    """Start a server in the background and wait (bounded) until `ready()` is
    true. A stale pid file is cleaned first; a live one is an error. On any
    failure the half-started server is stopped and the log's tail is shown."""
    if pid_file.is_stale():
        log.info("removing the stale pid file %s (pid %s is not running)", pid_file.path, pid_file.read())
        pid_file.remove()
    running = pid_file.process()
    if running is not None:
        raise LifecycleError(f"{what} is already running (pid {running.pid}, pid file {pid_file.path})")
    process = spawn(command, log_path, env=env, cwd=cwd, pid_file=pid_file)
    try:
        wait_until(ready, timeout, what, alive=lambda: is_alive(process))
    except (LifecycleError, KeyboardInterrupt) as error:
        pid_file.stop(grace=5)
        raise LifecycleError(f"{error}; its log {log_path} ends with:\n{tail(log_path)}") from None
    return process


@contextlib.contextmanager
def running_server(command, pid_file, log_path, ready, what, timeout=60.0, env=None, cwd=None):
    """start_server as a context manager: the server is stopped on leaving, also on errors."""
    process = start_server(command, pid_file, log_path, ready, what, timeout, env, cwd)
    try:
        yield process
    finally:
        pid_file.stop(grace=5)


def stop_server(pid_file, what, grace):
    """A server script's `stop`: stop by the pid file and say what happened
    (stopping what is not running is fine: exit 0)."""
    pid = pid_file.stop(grace=grace)
    if pid is None:
        log.info("no %s is running (pid file %s)", what, pid_file.path)
    else:
        log.info("stopped pid %d (%s)", pid, what)
    return 0


def server_cli(argv, prog, description, commands, make_settings, errors=()):
    """The `[start|stop|status]` command line the server scripts share: parse
    the command (start when none), log "==> ..." to stdout, run
    `commands[name](make_settings())`, and print a FizbuzError (its exit
    code), a ValueError or one of `errors` (exit 1) as one line instead of a
    traceback."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", default="start", choices=tuple(commands))
    args = parser.parse_args(argv)
    logs.setup("progress")
    try:
        return commands[args.command](make_settings())
    except (FizbuzError, ValueError, *errors) as error:
        print(f"{Path(prog).name}: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)


def tail(path, lines=20):
    """The last lines of a log (not through a link: see open_log)."""
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as handle:
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    except OSError as error:  # ELOOP: a link
        return f"({path} not read: {error.strerror})"
    return "\n".join(text.splitlines()[-lines:])


class ScriptedServer:
    """A throw-away server of the project's own, driven by its script
    (start_mms.sh, serve.sh): `start`, then `stop` by the script and by every
    pid file of the family, so nothing outlives the caller; the folder goes
    with `remove` when this object made it. Subclasses set the script, env,
    folder and pid files."""

    def __init__(self, script, env, folder, own_folder, pid_files):
        self.script_path, self.env = Path(script), env
        self.folder, self.own_folder = Path(folder), own_folder
        self.pid_files = pid_files  # the first is the server's own
        self.pid = None

    def run_script(self, script, *args, timeout=300):
        return subprocess.run(
            [str(script), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self):
        result = self.run_script(self.script_path, "start")
        if result.returncode != 0:
            self.stop()
            raise LifecycleError(f"{self.script_path.name} failed:\n{result.stdout}\n{result.stderr}")
        self.pid = self.pid_files[0].read()
        return result

    def stop(self):
        result = self.run_script(self.script_path, "stop", timeout=120)
        for pid_file in self.pid_files:  # if the script could not: by PID
            pid_file.stop(grace=5)
        return result

    def remove(self):
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()  # stops what it started when it fails
        except BaseException:
            self.remove()  # and the folder goes too: nothing outlives a failed start
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        self.remove()
