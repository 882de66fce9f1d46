"""The front door's promises, through the real nginx to real MMS hosts."""

import concurrent.futures
import json
import re

import pytest

from fizbuz import answers
from fizbuz.contract import MAX_INPUT, MIN_INPUT
from fizbuz.lifecycle import free_port, wait_until
from serving.front import client, tokens
from serving.front.config import FrontSettings
from serving.front.nginx import FrontDoor
from probes import curl_status

pytestmark = pytest.mark.e2e


def test_every_input_is_answered_right_with_a_json_content_type(fleet):
    content_types = set()

    def ask(number):
        status, headers, text = fleet.predict(number)
        content_types.add(headers.get("content-type"))
        return status, text

    assert answers.ask_all(ask, range(MIN_INPUT, MAX_INPUT + 1), threads=16) == []
    assert content_types == {"application/json"}


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", ""])
def test_no_or_wrong_token_gets_401_json(fleet, token):
    status, headers, text = fleet.predict(14, token=token)
    assert status == 401
    assert headers["content-type"] == "application/json"
    assert headers["www-authenticate"].startswith("Bearer")
    assert json.loads(text)["code"] == 401


def test_basic_auth_is_not_a_bearer_token(fleet):
    status, _, _ = fleet.request(body={"input.1": 14}, token=None, headers={"Authorization": f"Basic {fleet.token}"})
    assert status == 401


def test_body_over_the_cap_gets_413_json(fleet):
    status, headers, text = fleet.request(
        body=b'{"input.1": ' + b" " * 8000 + b"14}", token="default", headers={"Content-Type": "application/json"}
    )
    assert status == 413
    assert json.loads(text) == {"error": "request body too large (limit 4k)", "code": 413}
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/models"),
        ("GET", "/models/fizbuz_package"),
        ("PUT", "/models/fizbuz_package?min_worker=5"),
        ("DELETE", "/models/fizbuz_package"),
        ("POST", "/models?url=x.mar"),
        ("GET", "/ping"),
        ("OPTIONS", "/"),
        ("GET", "/api-description"),
        ("POST", "/predictions/other_model"),
        ("POST", "/predictions/fizbuz_package/1"),
        ("GET", "/_errors/400"),
    ],
)
def test_everything_but_predictions_and_readiness_is_404_json(fleet, method, path):
    status, headers, text = fleet.request(method, path)
    assert status == 404
    assert json.loads(text)["code"] == 404
    assert headers["content-type"] == "application/json"


def test_get_on_predictions_is_405_json(fleet):
    status, headers, text = fleet.request("GET")
    assert (status, headers["allow"], json.loads(text)["code"]) == (405, "POST", 405)
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("body", [b"{not json", b'{"input.1": 1023}', b'{"input.1": "7"}', b"", b"\xff\xfe"])
def test_bad_input_gets_the_hosts_400_json_and_is_not_retried(fleet, body):
    status, headers, text = fleet.request(body=body, headers={"Content-Type": "application/json"})
    assert status == 400
    assert json.loads(text)["code"] == 400
    assert headers["content-type"] == "application/json"
    assert fleet.predict(14)[0] == 200  # nothing broke
    request_id = headers["x-request-id"]  # not logged by nginx: find the 400 lines instead
    lines = fleet.access_log_lines(predicate=lambda l: '" 400 ' in l and "ustatus=400" in l)
    assert lines and all("," not in l.split("ustatus=")[1].split()[0] for l in lines), request_id


def test_readiness_is_a_real_prediction(fleet):
    status, headers, text = fleet.request("GET", "/ready", token=None)
    assert (status, json.loads(text)) == (200, {"next_number": "FizzBuzz"})
    lines = fleet.access_log_lines(predicate=lambda l: "GET /ready" in l and "ustatus=200" in l)
    assert lines


def test_readiness_says_503_when_no_host_answers(tmp_path, fleet):
    # A second front door over a port where nothing listens.
    token_file = tmp_path / "tokens.txt"
    tokens.add(token_file, "default")
    listen = f"127.0.0.1:{free_port()}"
    door = FrontDoor(tmp_path / "front")
    settings = FrontSettings(
        listen=listen, hosts=[f"127.0.0.1:{free_port()}"], certificate=fleet.cafile, key=fleet.settings.key
    )
    door.write(settings, token_file)
    try:
        door.start(listen)
        status, _, text = client.request("127.0.0.1", int(listen.rsplit(":")[1]), "GET", "/ready", fleet.cafile)
        assert status == 503 and json.loads(text)["ready"] is False
    finally:
        door.stop()
    assert not door.running() and door.leftovers() == []


def test_access_log_has_upstream_address_status_and_time(fleet):
    assert fleet.predict(5)[0] == 200
    lines = fleet.access_log_lines(predicate=lambda l: "POST /predictions" in l and "ustatus=200" in l)
    line = lines[-1]
    upstream = line.split("upstream=")[1].split()[0]
    assert upstream in [h.upstream for h in fleet.hosts]
    # urt is the upstream's time as nginx logs it (seconds, 3 decimals); how fast it was is
    # the benchmarks' business, not this test's.
    assert re.search(r" rt=\d+\.\d{3} ", line) and re.search(r" urt=\d+\.\d{3}(\s|$)", line), line
    assert "client=default" in line


def test_rate_limit_per_token_gives_429_json_and_the_default_does_not(fleet):
    other = tokens.add(fleet.fleet.token_file, "other")
    fleet.fleet.update_front(rate=2, burst=3)
    after = fleet.access_log_size()
    error_log = fleet.fleet.door.error_log
    error_log_offset = error_log.stat().st_size
    try:
        # Rounds of 16 requests at once (at most 5 rounds: bounded, and no stopwatch):
        # 2 req/s with a burst of 3 cannot let a round through whole.
        codes, refusal = [], None
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for _ in range(5):
                replies = list(pool.map(fleet.predict, range(16)))
                codes += [status for status, _, _ in replies]
                refusal = next((reply for reply in replies if reply[0] == 429), None)
                if refusal:
                    break
        assert refusal is not None, codes
        status, headers, text = refusal
        assert json.loads(text)["code"] == 429 and headers["content-type"] == "application/json"
        assert set(codes) <= {200, 429}, codes  # the rest were served
        assert fleet.predict(1, token=other)[0] == 200  # another token has its own budget
    finally:
        tokens.revoke(fleet.fleet.token_file, "other")
        fleet.fleet.update_front(rate=FrontSettings.rate, burst=FrontSettings.burst)
    refused = codes.count(429)
    # Every 429 is the limiter's: nginx logged each one against the per-token zone, and
    # none of them reached a host.
    with open(error_log, "rb") as log:
        log.seek(error_log_offset)
        limited = [
            line
            for line in log.read().decode(errors="replace").splitlines()
            if "limiting requests" in line and 'zone "per_token"' in line
        ]
    assert len(limited) == refused, limited

    def refused_lines():  # nginx flushes each worker's access-log buffer every second
        found = [line for line in fleet.fleet.door.access_log.read_text().splitlines()[after:] if '" 429 ' in line]
        return found if len(found) >= refused else None

    lines = wait_until(refused_lines, 30, "the 429 lines in the access log")
    # No upstream address: "-", or empty where the log format takes it from a variable.
    assert len(lines) == refused and all(re.search(r" upstream=-? ustatus=", line) for line in lines), lines
    # The default limit: 32 clients at full speed, nothing refused.
    with fleet.load(32) as load:
        load.wait_for_answers(3000)
    assert load.result.summary()["failed"] == 0


def test_tokens_added_and_revoked_by_reload_drop_no_request(fleet):
    token_file = fleet.fleet.token_file
    with fleet.load(16) as load:
        load.wait_for_answers(300)
        new = tokens.add(token_file, "newcomer")
        assert fleet.predict(3, token=new)[0] == 401  # not before the reload
        fleet.fleet.reload()
        assert fleet.predict(3, token=new)[0] == 200
        tokens.revoke(token_file, "newcomer")
        fleet.fleet.reload()
        assert fleet.predict(3, token=new)[0] == 401
        answered = load.result.answered
        load.wait_for_answers(answered + 300)  # still flowing after both reloads
    summary = load.result.summary()
    assert summary["failed"] == 0 and summary["wrong"] == 0, summary["failure_samples"]


def test_management_port_is_unreachable_from_another_namespace(fleet):
    if fleet.state["mode"] != "netns":
        pytest.skip("needs network namespaces (root)")
    first, second = fleet.hosts[:2]
    path = "/models/fizbuz_package"

    def curl(namespace, url):
        return curl_status(url, max_time=3, namespace=namespace)

    # It exists and answers on the host's own loopback...
    assert curl(first.namespace, f"http://127.0.0.1:{first.management_port}{path}") == "200"
    # ...but not from the other host, nor from the root namespace, by address or loopback.
    assert curl(second.namespace, f"http://{first.address}:{first.management_port}{path}") == "000"
    assert curl(second.namespace, f"http://127.0.0.1:{first.management_port}{path}") == "000"
    assert curl(None, f"http://{first.address}:{first.management_port}{path}") == "000"
    assert curl(None, f"http://127.0.0.1:{first.management_port}{path}") == "000"
    # While the predictions port of that host is reachable from the other one.
    assert curl(second.namespace, f"http://{first.address}:{first.inference_port}/ping") == "200"


def raw_exchange(fleet, payload, tls=True):
    import socket
    import ssl

    with socket.create_connection((fleet.address, fleet.port), timeout=10) as sock:
        stream = (
            ssl.create_default_context(cafile=fleet.cafile).wrap_socket(sock, server_hostname=fleet.address)
            if tls
            else sock
        )
        stream.sendall(payload)
        reply = b""
        while chunk := stream.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply and reply.rstrip().endswith(b"}"):
                break
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.mark.parametrize(
    "payload,tls",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),  # plain HTTP to HTTPS
        (b"POST /predictions/fizbuz_package HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", True),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"NONSENSE\r\n\r\n", True),
    ],
)
def test_requests_nginx_refuses_get_json_too_and_nothing_breaks(fleet, payload, tls):
    head, body = raw_exchange(fleet, payload, tls)
    status = int(head.split()[1])
    assert status in (400, 414, 431), head  # 431: headers too large (issue 22)
    assert "content-type: application/json" in head.lower()
    assert json.loads(body)["code"] == status
    assert fleet.predict(14)[0] == 200
