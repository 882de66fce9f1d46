"""Start, stop or inspect the Flask + gunicorn baseline (serving/flask/app.py).

  serving/flask/serve.sh [start]   start gunicorn on 127.0.0.1:$FIZBUZ_FLASK_PORT, wait until it answers
  serving/flask/serve.sh stop      stop the gunicorn started from $FIZBUZ_FLASK_RUN_DIR (by its pid file)
  serving/flask/serve.sh status    print its pid and worker processes

Serves FizBuzNet from assets/fizbuz_model.pth with MMS's contract:
  curl -X POST http://127.0.0.1:$FIZBUZ_FLASK_PORT/predictions/fizbuz_package \\
       -H 'Content-Type: application/json' -d '{"input.1": 14}'
Start returns once a real prediction is answered; re-running it while up only reports.

Environment (defaults in brackets; the old names without FIZBUZ_FLASK_/FIZBUZ_ still work):
  FIZBUZ_FLASK_PORT          [8000]   port on 127.0.0.1
  FIZBUZ_FLASK_WORKERS       [2]      gunicorn worker processes
  FIZBUZ_FLASK_WORKER_CLASS  [sync]   sync, or gthread (threads in each worker)
  FIZBUZ_FLASK_THREADS       [4]      threads per worker for gthread
  FIZBUZ_FLASK_KEEP_ALIVE    [75]     seconds gthread keeps an idle connection open (gunicorn's own 2 s
                          makes a client that pauses reuse a socket just as it closes)
  FIZBUZ_FLASK_ACCESS_LOG    [0]      1 writes $FIZBUZ_FLASK_RUN_DIR/access.log (costs throughput)
  FIZBUZ_FLASK_RUN_DIR       [run/flask]  pid file and gunicorn.log
  FIZBUZ_FLASK_START_TIMEOUT [120]    seconds to wait for the first answer
  FIZBUZ_WEIGHTS             [assets/fizbuz_model.pth]  the PyTorch weights to serve
"""

import logging
import os
import sys
from pathlib import Path

from fizbuz import settings
from fizbuz.contract import ROOT
from fizbuz.http_client import answers_smoke_request, predict_url
from fizbuz.lifecycle import LifecycleError, PidFile, check_port_free, server_cli, start_server, stop_server

APP = "serving.flask.app:create_app()"
WORKER_CLASSES = ("sync", "gthread")

log = logging.getLogger("flask")


class Settings:
    def __init__(self, env=os.environ):
        self.port = settings.value("flask_port", env)
        self.workers = settings.value("flask_workers", env)
        self.worker_class = settings.value("flask_worker_class", env)
        self.threads = settings.value("flask_threads", env)
        self.keep_alive = settings.value("flask_keep_alive", env)
        self.access_log = settings.value("flask_access_log", env)
        self.run_dir = settings.value("flask_run_dir", env)
        self.timeout = settings.value("flask_start_timeout", env)
        self.pid_file = PidFile(self.run_dir / "gunicorn.pid", "gunicorn")
        self.log_file = self.run_dir / "gunicorn.log"

    def command(self):
        gunicorn = Path(sys.executable).parent / "gunicorn"
        if not gunicorn.exists():
            raise LifecycleError(
                f"gunicorn is not installed in {gunicorn.parent.parent}: run scripts/setup_env.sh --dev"
            )
        command = [
            gunicorn,
            "--chdir",
            ROOT,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            self.workers,
            "--worker-class",
            self.worker_class,
            "--error-logfile",
            self.log_file,
            "--no-control-socket",
        ]
        if self.access_log:
            command += ["--access-logfile", self.run_dir / "access.log"]
        if self.worker_class == "gthread":  # gunicorn turns sync into gthread when given --threads > 1
            command += ["--threads", self.threads, "--keep-alive", self.keep_alive]
        return command + [APP]


def start(settings):
    running = settings.pid_file.process()
    if running is not None:
        log.info(
            "gunicorn is already running from %s (pid %d); 'serving/flask/serve.sh stop' first to restart it",
            settings.run_dir,
            running.pid,
        )
        return 0
    if settings.worker_class not in WORKER_CLASSES:
        raise LifecycleError(
            f"FIZBUZ_FLASK_WORKER_CLASS (WORKER_CLASS) must be sync or gthread, got {settings.worker_class!r}"
        )
    check_port_free(settings.port, "gunicorn", hint=" with FIZBUZ_FLASK_PORT=")
    url = predict_url(settings.port)
    log.info(
        "starting gunicorn (%d %s workers) on 127.0.0.1:%d, log %s",
        settings.workers,
        settings.worker_class,
        settings.port,
        settings.log_file,
    )
    process = start_server(
        settings.command(),
        settings.pid_file,
        settings.log_file,
        ready=lambda: answers_smoke_request(url, timeout=2),
        what=f"a real prediction on port {settings.port}",
        timeout=settings.timeout,
    )
    log.info("serving on %s (pid %d)", url, process.pid)
    return 0


def stop(settings):
    return stop_server(settings.pid_file, "gunicorn", grace=30)


def status(settings):
    process = settings.pid_file.process()
    if process is None:
        raise LifecycleError(f"no gunicorn is running from {settings.run_dir}")
    print(f"gunicorn master {process.pid}; workers:")
    for child in process.children():
        print(f"{child.pid:>8} {child.memory_info().rss // 1024:>8} {' '.join(child.cmdline())}")
    return 0


def main(argv=None):
    return server_cli(
        argv, "serving/flask/serve.sh", __doc__, {"start": start, "stop": stop, "status": status}, Settings
    )


if __name__ == "__main__":
    sys.exit(main())
