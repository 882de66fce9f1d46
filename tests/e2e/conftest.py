"""A real MMS, started by the real start_mms.sh on free ports in a temp run folder.

Nothing here touches a server the user may be running: the ports are free ones
chosen now, TMPDIR/TEMP/logs live in the test's own folder, and teardown stops
the server by the pid file in that folder (and kills by PID if that fails).
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest
import requests
import requests.adapters

from mms_control import RunFolder, worker_processes
from ports import free_port
from project import ROOT

MODEL = "fizbuz_package"


class MmsServer:
    def __init__(self, run_dir, model_store, **settings):
        self.run_dir = Path(run_dir)
        self.inference_port = free_port()
        self.management_port = free_port(taken={self.inference_port})
        self.env = dict(
            os.environ,
            FIZBUZ_RUN_DIR=str(self.run_dir), MODEL_STORE=str(model_store),
            INFERENCE_PORT=str(self.inference_port), MANAGEMENT_PORT=str(self.management_port),
            TMPDIR=str(self.run_dir / "tmp"), TEMP=str(self.run_dir / "tmp"),
            MMS_TIMEOUT="120", **{k.upper(): str(v) for k, v in settings.items()},
        )
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.session = requests.Session()
        # Room for the concurrent tests' threads to keep their connections.
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))
        self.pid = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.inference_port}/predictions/{MODEL}"

    @property
    def logs(self):
        return self.run_dir / "logs"

    @property
    def pid_file(self):
        return self.run_dir / "tmp" / ".model_server.pid"

    def script(self, *args, timeout=300):
        return subprocess.run([str(ROOT / args[0]), *args[1:]], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self):
        result = self.script("start_mms.sh")
        if result.returncode != 0:
            self.stop()
            pytest.fail(f"start_mms.sh failed:\n{result.stdout}\n{result.stderr}")
        self.pid = int(self.pid_file.read_text())
        return result

    def stop(self):
        result = self.script("start_mms.sh", "stop", timeout=120)
        if self.pid is not None and psutil.pid_exists(self.pid):
            # The script failed to stop it: kill by PID so nothing outlives the tests.
            process = psutil.Process(self.pid)
            for member in process.children(recursive=True) + [process]:
                member.kill()
        return result

    def post(self, body, content_type="application/json", **kwargs):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": content_type} if content_type else {}
        return self.session.post(self.url, data=data, headers=headers, timeout=30, **kwargs)

    def describe(self):
        response = self.session.get(
            f"http://127.0.0.1:{self.management_port}/models/{MODEL}", timeout=10)
        response.raise_for_status()
        return response.json()

    def ready_workers(self):
        return [w for w in self.describe()["workers"] if w["status"] == "READY"]

    def worker_pids(self):
        return {wid: process.pid for wid, process in worker_processes(RunFolder(self.run_dir)).items()}


def short_run_dir():
    # Worker sockets live in the run folder and a unix socket path must stay
    # under 108 bytes, so not pytest's long per-test paths.
    return Path(tempfile.mkdtemp(prefix="fbz-mms-"))


@pytest.fixture(scope="session")
def mms(model_store):
    """One server for the tests that leave it as they found it: start_mms.sh defaults."""
    server = MmsServer(short_run_dir(), model_store)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.run_dir, ignore_errors=True)


@pytest.fixture
def fresh_mms(model_store):
    """A server of the test's own, for tests that scale, kill or stop it."""
    servers = []

    def make(start=True, **settings):
        server = MmsServer(short_run_dir(), model_store, **settings)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()
        shutil.rmtree(server.run_dir, ignore_errors=True)
