"""The load generator checks every answer: against a small local stub that
answers right, wrong on purpose, with an error, or not at all, it counts each
kind, and its CLI exits 1 on anything but right answers.

The stub runs in a thread on a free loopback port and is stopped on leaving."""

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading

import pytest
from aiohttp import web

from fizbuz.answers import expected_label
from fizbuz.contract import INPUT_KEY, OUTPUT_KEY, PREDICT_PATH, ROOT
from fizbuz.lifecycle import free_port
from loadtest.loadgen import LoadResult, run_load
from stub_server import StubServer

WRONG_AT, FAILING_AT = 3, 7  # the stub answers these inputs wrong / with a 500


class Stub(StubServer):
    """An HTTP server with the predictions API: right answers, except (with
    mistakes) at WRONG_AT (a wrong label) and FAILING_AT (a 500). Records each request's
    connection, to count keep-alive connections."""

    def __init__(self, mistakes=True):
        super().__init__()
        self.mistakes = mistakes
        self.peers = set()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{PREDICT_PATH}"

    async def predict(self, request):
        self.peers.add(request.transport.get_extra_info("peername"))
        number = (await request.json())[INPUT_KEY]
        if self.mistakes and number == FAILING_AT:
            return web.Response(status=500, text="on purpose")
        label = "wrong on purpose" if self.mistakes and number == WRONG_AT else expected_label(number)
        return web.json_response({OUTPUT_KEY: label})

    def routes(self, app):
        app.router.add_post(PREDICT_PATH, self.predict)


@pytest.fixture
def stub():
    with Stub() as server:
        yield server


@contextlib.contextmanager
def hang_up_server():
    """A server that accepts, reads a request and closes without answering."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(30)

        def serve():
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listener.accept()
                    with connection:
                        connection.recv(65536)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        listener.shutdown(socket.SHUT_RDWR)
    thread.join(timeout=30)


def test_counts_right_wrong_and_failed_answers(stub):
    result = asyncio.run(run_load(url=stub.url, concurrency=1, total=20))
    summary = result.summary()
    assert summary["requests"] == summary["answered"] == 20
    assert summary["statuses"] == {200: 19, 500: 1}
    assert summary["wrong_answers"] == 1 and summary["transport_errors"] == {}
    assert result.wrong == [(WRONG_AT, 200, b'{"%s": "wrong on purpose"}' % OUTPUT_KEY.encode())]
    assert result.failures == [(FAILING_AT, 500, b"on purpose")]
    assert len(result.latencies) == 20
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert not result.healthy


def test_each_client_keeps_one_keep_alive_connection(stub):
    result = asyncio.run(run_load(url=stub.url, concurrency=8, total=400))
    assert result.answered == 400
    assert len(stub.peers) == 8  # 400 requests over 8 connections, none reopened


def test_port_shortcut_and_duration_stop_the_load(stub):
    result = asyncio.run(run_load(stub.port, concurrency=2, duration=0.5))
    assert result.answered > 0 and result.answered == result.sent


def test_a_refused_connection_is_a_transport_error():
    result = asyncio.run(run_load(free_port(), concurrency=2, total=4))
    assert result.answered == 0
    assert result.transport_errors == {"connect: ConnectionRefusedError": 4}


def test_a_dropped_connection_is_a_transport_error():
    with hang_up_server() as port:
        result = asyncio.run(run_load(port, concurrency=1, total=3, timeout=30))
    assert result.answered == 0 and result.sent == 3
    assert result.transport_errors == {"ServerDisconnectedError": 3}


def test_a_shared_result_accumulates_across_runs(stub):
    shared = LoadResult()  # as the fault tool watches a run in progress
    asyncio.run(run_load(url=stub.url, concurrency=1, total=5, result=shared))
    asyncio.run(run_load(url=stub.url, concurrency=1, total=12, result=shared))  # total counts the result's
    assert shared.sent == shared.answered == 12


def test_needs_a_duration_or_a_total():
    with pytest.raises(ValueError, match="duration or a total"):
        asyncio.run(run_load(8080, concurrency=1))


def loadgen_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "loadtest.loadgen", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )


def test_cli_prints_a_json_report_and_fails_on_a_wrong_answer(stub):
    result = loadgen_cli("--url", stub.url, "-c", "1", "-n", "10")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["requests"] == 10 and report["wrong_answers"] == 1
    assert report["statuses"] == {"200": 9, "500": 1}
    assert f"n={WRONG_AT} status=200" in result.stderr and f"n={FAILING_AT} status=500" in result.stderr


def test_cli_passes_when_every_answer_is_right():
    with Stub(mistakes=False) as honest:
        result = loadgen_cli("--url", honest.url, "-c", "4", "-n", "40")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["statuses"] == {"200": 40} and report["wrong_answers"] == 0


def test_cli_refuses_a_bad_concurrency_without_sending():
    result = loadgen_cli("--port", str(free_port()), "-c", "0")
    assert result.returncode == 2 and "--concurrency must be at least 1" in result.stderr
