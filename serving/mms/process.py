"""Process control for one MMS: its run folder, launching it, finding its
frontend and workers, stopping the whole family by its pid file."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import psutil

from fizbuz.lifecycle import LifecycleError, PidFile, end_family, end_processes, open_log, processes_under, tail
from fizbuz.users import as_user, blocked_folder

log = logging.getLogger(__name__)

PID_FILE_NAME = ".model_server.pid"  # MMS writes it to $TMPDIR
FRONTEND_MARKER = "com.amazonaws.ml.mms.ModelServer"
# MMS 1.0.8 gives each worker the socket TMPDIR/.mms.sock.<worker id> (its --sock-name).
WORKER_SOCKET = ".mms.sock."
STATE_FILE_NAME = "server.json"


class RunFolder:
    """Where one server's runtime files live: TMPDIR/TEMP (pid file, worker
    sockets, unpacked models), the generated configs, logs/ and the settings
    it was started with."""

    def __init__(self, path):
        self.path = Path(path).resolve()
        self.tmp = self.path / "tmp"
        self.logs = self.path / "logs"
        self.pid_file = PidFile(self.tmp / PID_FILE_NAME, FRONTEND_MARKER)
        self.state_file = self.path / STATE_FILE_NAME
        self.config = self.path / "config.properties"
        self.log_config = self.path / "log4j.properties"
        self.console_log = self.logs / "mms_console.log"
        self.tls = self.path / "tls"
        self.worker_sockets = str(self.tmp / WORKER_SOCKET)  # a worker's socket path, less its id

    def create(self):
        for folder in (self.path, self.tmp, self.logs):
            folder.mkdir(parents=True, exist_ok=True)

    def remove_sockets(self):
        for sock in self.tmp.glob(f"{WORKER_SOCKET}*"):
            sock.unlink(missing_ok=True)

    def read_state(self):
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def write_state(self, state):
        self.state_file.write_text(json.dumps(state, indent=2))

    def server(self):
        """The live MMS frontend of this folder, or None. Its pid file is written
        by MMS, which may run as an unprivileged user: a pid is taken only when
        that process is an MMS frontend started with this folder's config, so a
        forged pid file cannot make `stop` end another server. The command line
        tells, not the working folder: /proc/PID/cwd can be unreadable for a
        moment in a live JVM, and a frontend judged gone then was left running
        while a second one was started in its folder (seen once in CI)."""
        process = self.pid_file.process()
        if process is None:
            return None
        try:
            words = process.cmdline()
        except psutil.AccessDenied:  # another user's server: we could not stop it either
            return process
        except psutil.Error:
            return None
        if not words:  # it exited since the pid file was read: gone, not another folder's
            return None
        if not self.started_here(words):
            log.warning("%s names pid %d, an MMS of another folder: ignored", self.pid_file.path, process.pid)
            return None
        return process

    def started_here(self, words):
        """True when a command line (`words`) starts MMS with this folder's
        config.properties (mxnet-model-server passes it on as `-f PATH`)."""
        return any(flag == "-f" and path == str(self.config) for flag, path in zip(words, words[1:]))

    def strays(self):
        """Frontends and workers of this folder still running, found by their
        command lines in one look: what a crashed or misjudged server leaves."""
        return [
            process
            for process in processes_under(self.path)
            if any(
                FRONTEND_MARKER in word or word.startswith(self.worker_sockets)
                for word in process.info["cmdline"] or []
            )
        ]

    def env(self):
        return dict(
            os.environ,
            TMPDIR=str(self.tmp),
            TEMP=str(self.tmp),
            LOG_LOCATION=str(self.logs),
            METRICS_LOCATION=str(self.logs),
        )


def worker_processes(run):
    """{worker id: psutil.Process} for this run folder's workers (MMS 1.0.8 does
    not report their pids; each worker's socket path ends in its id)."""
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        for word in process.info["cmdline"] or []:
            if word.startswith(run.worker_sockets):
                found[word[len(run.worker_sockets) :]] = process
    return found


def clean_stale(run):
    """After a crash (kill -9 of the frontend), remove what the dead server left:
    its workers, and any frontend of this folder still running (one the pid
    file does not name must not keep the folder's ports)."""
    log.warning(
        "found a stale pid file (pid %s is not running): cleaning up after the crashed server", run.pid_file.read()
    )
    end_processes(run.strays())
    run.pid_file.remove()
    run.remove_sockets()


# What an MMS run as another user may write: its TMPDIR (pid file, worker
# sockets, unpacked models) only for itself, its logs readable by its group.
WRITABLE_MODES = {"tmp": 0o700, "logs": 0o750}


def hand_over(run, user, reads=(), writes=()):
    """Before MMS starts as `user` (name, uid, gid): the folders it writes
    (tmp, logs, and `writes`) become its own and closed to other users; the
    run folder, configs and `reads` (model store, venv) stay root's and must
    be reachable by it (else a clear error now, not a Java stack trace later).
    What an earlier run left in its folders becomes its own too (never
    following a link)."""
    name, uid, gid = user
    blocked = blocked_folder(user, run.path, *reads)
    if blocked is not None:
        raise LifecycleError(
            f"MMS runs as {name}, who cannot enter {blocked}: open it (chmod o+x) or choose another folder"
        )
    for path in (run.path, run.config, run.log_config):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by MMS, written by root only
    modes = {
        run.tmp: WRITABLE_MODES["tmp"],
        run.logs: WRITABLE_MODES["logs"],
        **{Path(folder): WRITABLE_MODES["tmp"] for folder in writes},
    }
    for folder, mode in modes.items():
        folder.mkdir(parents=True, exist_ok=True)
        # fwalk by folder descriptors: a folder swapped for a link meanwhile is never followed.
        for _, folders, files, folder_fd in os.fwalk(folder, follow_symlinks=False):
            for entry in (*folders, *files):
                os.chown(entry, uid, gid, dir_fd=folder_fd, follow_symlinks=False)
        os.chown(folder, uid, gid, follow_symlinks=False)  # in root's run folder: MMS cannot swap it
        folder.chmod(mode)


def launch(run, model_store, env=None, user=None):
    """Run `mxnet-model-server --start` for this folder (with `env`, default
    run.env(); its workers inherit it), as `user` ((name, uid, gid); None: as
    we are; see hand_over); returns the frontend process.

    A frontend that dies the moment it starts without a word in its console
    or log (seen once in hundreds of starts on a loaded machine) is started
    once more, with a warning; one that says why it stopped is not: that
    reason would not change."""
    try:
        return launch_once(run, model_store, env, user)
    except FrontendGone as gone:
        if gone.said_why:
            raise
        log.warning("%s: starting it once more", gone)
        end_processes(run.strays())  # never two frontends on one folder's ports
        run.pid_file.remove()
        return launch_once(run, model_store, env, user)


class FrontendGone(LifecycleError):
    def __init__(self, run, console_before):
        console, mms_log = tail(run.console_log), tail(run.logs / "mms_log.log")
        self.said_why = size(run.console_log) > console_before or (run.logs / "mms_log.log").exists()
        super().__init__(
            f"MMS's frontend (pid {run.pid_file.read()}) exited right after it was started; "
            f"its console says:\n{console}\nits log says:\n{mms_log}"
        )


def size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def launch_once(run, model_store, env, user):
    console_before = size(run.console_log)
    launcher = Path(sys.executable).parent / "mxnet-model-server"
    command = [
        str(launcher),
        "--start",
        "--mms-config",
        str(run.config),
        "--model-store",
        str(model_store),
        "--log-config",
        str(run.log_config),
    ]
    env = dict(env or run.env())
    if user is not None:
        env.update(HOME=str(run.tmp), USER=user[0], LOGNAME=user[0])  # root's home is not its to write
    with open_log(run.console_log) as console:
        launched = subprocess.run(
            as_user(command, user),
            cwd=run.path,
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    if launched.returncode != 0:
        raise LifecycleError(f"mxnet-model-server --start failed:\n{tail(run.console_log)}")
    process = run.server()
    if process is None:
        raise FrontendGone(run, console_before)
    return process


def stop(run, timeout=20.0):
    """Stop the server whose pid file is in this run folder, with all its workers.
    Returns (pid, workers stopped), or None when none was running."""
    process = run.server()
    stopped = None
    if process is None:
        if run.pid_file.path.exists():
            clean_stale(run)
    else:
        stopped = (process.pid, end_family(process, grace=timeout))
        run.pid_file.remove()
        run.remove_sockets()
    run.state_file.unlink(missing_ok=True)
    return stopped
