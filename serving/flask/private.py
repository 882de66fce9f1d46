"""A throw-away Flask + gunicorn for tests and benchmarks: started by the real
serve.sh on a free port in its own temporary folder, stopped by its pid file
on leaving (and by PID if the script cannot). Never the user's server."""

import os
import tempfile
from pathlib import Path

from fizbuz.contract import ROOT
from fizbuz.http_client import predict_url
from fizbuz.lifecycle import PidFile, ScriptedServer, free_port

SERVE_SCRIPT = ROOT / "serving" / "flask" / "serve.sh"


class PrivateGunicorn(ScriptedServer):
    def __init__(self, worker_class="sync", workers=2, threads=4, run_dir=None):
        folder = Path(run_dir or tempfile.mkdtemp(prefix="fbz-flask-"))
        self.port = free_port()
        env = dict(
            os.environ,
            FIZBUZ_FLASK_PORT=str(self.port),
            FIZBUZ_FLASK_WORKERS=str(workers),
            FIZBUZ_FLASK_WORKER_CLASS=worker_class,
            FIZBUZ_FLASK_THREADS=str(threads),
            FIZBUZ_FLASK_RUN_DIR=str(folder),
        )
        self.pid_file = PidFile(folder / "gunicorn.pid", "gunicorn")
        super().__init__(SERVE_SCRIPT, env, folder, run_dir is None, [self.pid_file])

    @property
    def run_dir(self):
        return self.folder

    @property
    def url(self):
        return predict_url(self.port)

    def serve(self, *args, timeout=180):
        """Run serve.sh against this server."""
        return self.run_script(SERVE_SCRIPT, *args, timeout=timeout)
