"""End to end: the Flask baseline under a real gunicorn, started by serving/flask/serve.sh
(serving.flask.private) on a free port in a temp folder, held to the same answers and 400s as MMS."""

import json

import psutil
import pytest
import requests
import requests.adapters

from fizbuz.lifecycle import LifecycleError
from request_cases import BAD_BODIES, BAD_BODY_IDS, wrong_answers_for_every_input
from serving.flask.private import PrivateGunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class GunicornServer(PrivateGunicorn):
    """A PrivateGunicorn with a requests session for the tests' traffic."""

    def __init__(self, worker_class, workers=2):
        super().__init__(worker_class, workers)
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def start(self):
        try:
            return super().start()
        except LifecycleError as error:
            pytest.fail(str(error))

    def family(self):
        master = psutil.Process(self.pid)
        return [master] + master.children(recursive=True)

    def post(self, body, content_type="application/json"):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.session.post(self.url, data=data, headers={"Content-Type": content_type}, timeout=30)


@pytest.fixture(scope="module", params=["sync", "gthread"])
def flask_server(request):
    server = GunicornServer(request.param)
    server.start()
    yield server
    server.stop()
    server.remove()


def test_every_input_matches_pytorch_and_the_truth(flask_server):
    assert wrong_answers_for_every_input(flask_server.post, threads=8) == []


@pytest.mark.parametrize("name, body, content_type, fragment", BAD_BODIES, ids=BAD_BODY_IDS)
def test_bad_input_gets_the_same_400_as_mms(flask_server, mms, name, body, content_type, fragment):
    from_flask = flask_server.post(body, content_type)
    from_mms = mms.post(body, content_type)
    assert (from_flask.status_code, from_mms.status_code) == (400, 400)
    assert from_flask.json() == from_mms.json()
    assert fragment in from_flask.json()["error"]


TOO_BIG = b'{"input.1": 14, "pad": "' + b"x" * 200_000 + b'"}'  # past max_request_size (128 KiB)


def test_form_field_and_size_limit_as_in_mms(flask_server, mms):
    for server in (flask_server, mms):
        response = requests.post(server.url, files={"input.1": (None, "29")}, timeout=10)
        assert response.json() == {"next_number": "FizzBuzz"}
    assert flask_server.post(TOO_BIG).status_code == mms.post(TOO_BIG).status_code == 413
    assert flask_server.post({"input.1": 4}).json() == {"next_number": "Buzz"}


def test_the_connection_a_413_came_on_answers_the_next_request(flask_server):
    # gunicorn's gthread worker closed a keep-alive connection after a 413 whose body it had
    # not fully read; a client reusing it lost about one next request in ten. Forty rounds on one
    # connection make that loss all but certain to show; sent whole and sent chunked.
    session = requests.Session()
    for round_ in range(40):
        body = TOO_BIG if round_ % 2 else iter([TOO_BIG[:100_000], TOO_BIG[100_000:]])
        refused = session.post(flask_server.url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert refused.status_code == 413
        assert refused.json() == {"error": "request body too large (limit 131072 bytes)", "code": 413}
        answered = session.post(flask_server.url, json={"input.1": 4}, timeout=30)
        assert answered.json() == {"next_number": "Buzz"}, round_


def test_wrong_method_and_path_are_4xx(flask_server):
    assert requests.get(flask_server.url, timeout=10).status_code == 405
    unknown = requests.post(flask_server.url.replace("fizbuz_package", "nope"), data=b"{}", timeout=10)
    assert unknown.status_code == 404


def test_listens_on_loopback_only_with_the_chosen_workers(flask_server):
    master = psutil.Process(flask_server.pid)
    listening = {(c.laddr.ip, c.laddr.port) for c in master.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", flask_server.port)}
    assert len(master.children()) == 2
    worker_class = flask_server.env["FIZBUZ_FLASK_WORKER_CLASS"]
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
        server.remove()
