"""A throw-away Flask + gunicorn for tests and benchmarks: started by the real
serve.sh on a free port in its own temporary folder, stopped by its pid file
on leaving (and by PID if the script cannot). Never the user's server."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from fizbuz.contract import ROOT
from fizbuz.http_client import predict_url
from fizbuz.lifecycle import LifecycleError, PidFile, free_port

SERVE_SCRIPT = ROOT / "serving" / "flask" / "serve.sh"


class PrivateGunicorn:
    def __init__(self, worker_class="sync", workers=2, threads=4, run_dir=None):
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="fbz-flask-"))
        self.own_folder = run_dir is None
        self.port = free_port()
        self.env = dict(os.environ, PORT=str(self.port), WORKERS=str(workers), WORKER_CLASS=worker_class,
                        THREADS=str(threads), FLASK_RUN_DIR=str(self.run_dir))
        self.pid_file = PidFile(self.run_dir / "gunicorn.pid", "gunicorn")
        self.pid = None

    @property
    def url(self):
        return predict_url(self.port)

    def serve(self, *args, timeout=180):
        """Run serve.sh against this server."""
        return subprocess.run([str(SERVE_SCRIPT), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self):
        result = self.serve("start")
        if result.returncode != 0:
            self.stop()
            raise LifecycleError(f"serve.sh failed:\n{result.stdout}\n{result.stderr}")
        self.pid = self.pid_file.read()
        return result

    def stop(self):
        result = self.serve("stop", timeout=120)
        self.pid_file.stop(grace=5)  # if the script could not: by PID, so nothing outlives us
        return result

    def remove(self):
        if self.own_folder:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.remove()
