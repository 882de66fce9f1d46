"""End to end: the Flask baseline under a real gunicorn, started by flask_app/serve.sh
on a free port in a temp folder, held to the same answers and 400s as MMS."""

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

from fizbuz.lifecycle import free_port
from fizbuz.contract import ROOT
from request_cases import BAD_BODIES, BAD_BODY_IDS, wrong_answers_for_every_input

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVE = ROOT / "serving" / "flask" / "serve.sh"


class GunicornServer:
    def __init__(self, worker_class, workers=2):
        self.run_dir = Path(tempfile.mkdtemp(prefix="fbz-flask-"))
        self.port = free_port()
        self.env = dict(os.environ, PORT=str(self.port), WORKERS=str(workers),
                        WORKER_CLASS=worker_class, FLASK_RUN_DIR=str(self.run_dir))
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
        self.pid = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/predictions/fizbuz_package"

    def serve(self, *args):
        return subprocess.run([str(SERVE), *args], env=self.env, capture_output=True, text=True,
                              timeout=180, stdin=subprocess.DEVNULL)

    def start(self):
        result = self.serve("start")
        if result.returncode != 0:
            self.stop()
            pytest.fail(f"serve.sh failed:\n{result.stdout}\n{result.stderr}")
        self.pid = int((self.run_dir / "gunicorn.pid").read_text())
        return result

    def family(self):
        master = psutil.Process(self.pid)
        return [master] + master.children(recursive=True)

    def stop(self):
        result = self.serve("stop")
        if self.pid is not None and psutil.pid_exists(self.pid):
            # The script failed to stop it: kill by PID so nothing outlives the tests.
            for member in self.family():
                member.kill()
        return result

    def post(self, body, content_type="application/json"):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.session.post(self.url, data=data, headers={"Content-Type": content_type},
                                 timeout=30)


@pytest.fixture(scope="module", params=["sync", "gthread"])
def flask_server(request):
    server = GunicornServer(request.param)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.run_dir, ignore_errors=True)


def test_every_input_matches_pytorch_and_the_truth(flask_server):
    assert wrong_answers_for_every_input(flask_server.post, threads=8) == []


@pytest.mark.parametrize("name, body, content_type, fragment", BAD_BODIES, ids=BAD_BODY_IDS)
def test_bad_input_gets_the_same_400_as_mms(flask_server, mms, name, body, content_type, fragment):
    from_flask = flask_server.post(body, content_type)
    from_mms = mms.post(body, content_type)
    assert (from_flask.status_code, from_mms.status_code) == (400, 400)
    assert from_flask.json() == from_mms.json()
    assert fragment in from_flask.json()["error"]


def test_form_field_and_size_limit_as_in_mms(flask_server, mms):
    for server in (flask_server, mms):
        response = requests.post(server.url, files={"input.1": (None, "29")}, timeout=10)
        assert response.json() == {"next_number": "FizzBuzz"}
    too_big = b'{"input.1": 14, "pad": "' + b"x" * 100_000 + b'"}'
    assert flask_server.post(too_big).status_code == mms.post(too_big).status_code == 413
    assert flask_server.post({"input.1": 4}).json() == {"next_number": "Buzz"}


def test_wrong_method_and_path_are_4xx(flask_server):
    assert requests.get(flask_server.url, timeout=10).status_code == 405
    unknown = requests.post(flask_server.url.replace("fizbuz_package", "nope"), data=b"{}", timeout=10)
    assert unknown.status_code == 404


def test_listens_on_loopback_only_with_the_chosen_workers(flask_server):
    master = psutil.Process(flask_server.pid)
    listening = {(c.laddr.ip, c.laddr.port) for c in master.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", flask_server.port)}
    assert len(master.children()) == 2
    worker_class = flask_server.env["WORKER_CLASS"]
    assert f"Using worker: {worker_class}" in (flask_server.run_dir / "gunicorn.log").read_text()


def test_rerun_reports_and_stop_leaves_nothing():
    server = GunicornServer("sync", workers=1)
    try:
        server.start()
        family = server.family()
        again = server.serve("start")
        assert again.returncode == 0 and "already running" in again.stdout
        assert int((server.run_dir / "gunicorn.pid").read_text()) == server.pid
        result = server.serve("stop")
        assert result.returncode == 0, result.stderr
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
        assert not (server.run_dir / "gunicorn.pid").exists()
        assert "no gunicorn is running" in server.serve("stop").stdout
    finally:
        server.stop()
        shutil.rmtree(server.run_dir, ignore_errors=True)
