"""A throw-away MMS for tests, benchmarks and fault tools: started by the real
start_mms.sh on free ports, in its own short temporary run folder (TMPDIR,
TEMP, logs), and always stopped by its pid file on leaving. Never the user's
server."""

import os
import tempfile
from pathlib import Path

from fizbuz.contract import MODEL_STORE, ROOT
from fizbuz.http_client import predict_url
from fizbuz.lifecycle import ScriptedServer, free_ports
from serving.mms.metrics import control as metrics_control
from serving.mms import management
from serving.mms.process import RunFolder, worker_processes

START_SCRIPT = ROOT / "start_mms.sh"


def short_run_dir():
    # Worker sockets live in the run folder and a unix socket path must stay
    # under 108 bytes, so not pytest's long per-test paths.
    return Path(tempfile.mkdtemp(prefix="fbz-mms-"))


class PrivateMms(ScriptedServer):
    """settings: BATCH_SIZE, MAX_BATCH_DELAY, WORKERS, TLS, ACCESS_LOG ... as
    lower-case keywords (batch_size=16), passed to start_mms.sh as env."""

    def __init__(self, model_store=None, run_dir=None, inference_address="127.0.0.1", **settings):
        self.run = RunFolder(run_dir or short_run_dir())
        self.address = inference_address
        self.inference_port, self.management_port, self.metrics_port = free_ports(3)
        env = dict(
            os.environ,
            FIZBUZ_RUN_DIR=str(self.run.path),
            FIZBUZ_MODEL_STORE=str(model_store or MODEL_STORE),
            FIZBUZ_INFERENCE_ADDRESS=inference_address,
            FIZBUZ_INFERENCE_PORT=str(self.inference_port),
            FIZBUZ_MANAGEMENT_PORT=str(self.management_port),
            FIZBUZ_METRICS_PORT=str(self.metrics_port),
            FIZBUZ_MMS_TIMEOUT="120",
            **{f"FIZBUZ_{key.upper()}": str(value) for key, value in settings.items()},
        )
        # The frontend's pid file first; the metrics exporter's beside it.
        super().__init__(
            START_SCRIPT, env, self.run.path, run_dir is None, [self.run.pid_file, metrics_control.pid_file(self.run)]
        )

    @property
    def run_dir(self):
        return self.run.path

    @property
    def logs(self):
        return self.run.logs

    @property
    def url(self):
        return predict_url(self.inference_port, self.address)

    @property
    def metrics_url(self):
        """The exporter's /metrics (it answers unless started with metrics=0)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def script(self, *args, timeout=300):
        """Run start_mms.sh (or scale_workers.sh) against this server."""
        script = ROOT / args[0] if args and args[0].endswith(".sh") else START_SCRIPT
        rest = args[1:] if args and args[0].endswith(".sh") else args
        return self.run_script(script, *rest, timeout=timeout)

    def describe(self):
        return management.describe_model(self.management_port)

    def ready_workers(self):
        return management.ready_workers(self.describe())

    def workers(self):
        """{worker id: psutil.Process}"""
        return worker_processes(self.run)

    def worker_pids(self):
        return {wid: process.pid for wid, process in self.workers().items()}
