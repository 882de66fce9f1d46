"""Start and stop the front door's metrics exporter through fizbuz.lifecycle,
beside the fleet: pid file in the fleet's folder, log in the front door's
logs folder, so `fleet.sh stop` (or a start after a crash) finds exactly this
fleet's exporter."""

import logging
import sys
from pathlib import Path

from fizbuz import settings
from fizbuz.lifecycle import PidFile, check_port_free, start_server
from serving.front.metrics import log as front_log
from serving.mms.metrics.control import answers, metrics_url

log = logging.getLogger(__name__)

# The port Prometheus's registry gives nginx exporters; MMS's exporter is on 8082.
DEFAULT_PORT = settings.default("front_metrics_port")
EXPORTER_MODULE = "serving.front.metrics.exporter"
PID_FILE_NAME = "front_metrics_exporter.pid"
LOG_FILE_NAME = "metrics_exporter.log"


def pid_file(fleet_dir):
    return PidFile(Path(fleet_dir) / PID_FILE_NAME, EXPORTER_MODULE)


def running(fleet_dir):
    return pid_file(fleet_dir).process()


def start(fleet_dir, door, port, timeout=30.0):
    """Start the exporter for `door` (a serving.front.nginx.FrontDoor) and wait
    (bounded) until /metrics answers; returns its psutil.Process."""
    fleet_dir = Path(fleet_dir)
    check_port_free(int(port), "the front door's metrics exporter", hint=" (FRONT_METRICS_PORT; 0: no metrics)")
    command = [
        sys.executable,
        "-m",
        EXPORTER_MODULE,
        "--port",
        port,
        "--log",
        door.logs / front_log.LOG_NAME,
        "--state-file",
        fleet_dir / "fleet.json",
        "--nginx-pid-file",
        door.pid_file.path,
    ]
    log.info("starting the front door's metrics exporter on %s", metrics_url(port))
    return start_server(
        command,
        pid_file(fleet_dir),
        door.logs / LOG_FILE_NAME,
        ready=lambda: answers(port),
        what="the front door's metrics exporter",
        timeout=timeout,
    )


def stop(fleet_dir):
    """Stop this fleet's exporter (a stale pid file is removed); returns its pid or None."""
    return pid_file(fleet_dir).stop(grace=5)
