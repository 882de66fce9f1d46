"""Start and stop an MMS's metrics exporter through fizbuz.lifecycle, beside
the server in its run folder: pid file, log, and the workers' multiprocess
folder all live there, so `start_mms.sh stop` (or a start after a crash)
finds and ends exactly this server's exporter."""

import logging
import sys

from fizbuz import settings
from fizbuz.http_client import call
from fizbuz.lifecycle import PidFile, start_server
from fizbuz.users import as_user

log = logging.getLogger(__name__)

DEFAULT_PORT = settings.default("metrics_port")  # TorchServe's metrics port; MMS takes 8080/8081
EXPORTER_MODULE = "serving.mms.metrics.exporter"
PID_FILE_NAME = "metrics_exporter.pid"
LOG_FILE_NAME = "metrics_exporter.log"
MULTIPROC_DIR_NAME = "prometheus"


def metrics_url(port, address="127.0.0.1"):
    return f"http://{address}:{port}/metrics"


def multiproc_dir(run):
    return run.path / MULTIPROC_DIR_NAME


def pid_file(run):
    return PidFile(run.path / PID_FILE_NAME, EXPORTER_MODULE)


def log_path(run):
    return run.logs / LOG_FILE_NAME


def answers(port, timeout=2.0):
    return call("GET", metrics_url(port), timeout)[0] == 200


def start(run, port, management_port, timeout=30.0, poll_interval=1.0, user=None):
    """Start the exporter and wait (bounded) until /metrics answers; returns its
    psutil.Process. `user` ((name, uid, gid)): the user MMS runs as, whose
    workers' files it reads: never root reading what an unprivileged server wrote."""
    command = [
        sys.executable,
        "-m",
        EXPORTER_MODULE,
        "--port",
        port,
        "--multiproc-dir",
        multiproc_dir(run),
        "--run-dir",
        run.path,
        "--management-port",
        management_port,
        "--poll-interval",
        poll_interval,
    ]
    log.info("starting the metrics exporter on %s", metrics_url(port))
    return start_server(
        as_user([str(word) for word in command], user),
        pid_file(run),
        log_path(run),
        ready=lambda: answers(port),
        what="the metrics exporter",
        timeout=timeout,
    )


def stop(run):
    """Stop this run folder's exporter (a stale pid file is removed); returns its pid or None."""
    return pid_file(run).stop(grace=5)
