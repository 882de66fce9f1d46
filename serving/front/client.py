"""Talk to the front door: one request, and an answer-checking concurrent load.

Threads with one persistent HTTPS connection each (http.client), like a
keep-alive client. A request that fails on a *reused* connection before any
byte of a reply came back was never read by the server (it closed an idle
connection, e.g. old workers after a reload): it is sent again once on a new
connection, as HTTP clients do, and counted as `resent`.
"""

import http.client
import json
import random
import ssl
import threading
import time
from dataclasses import dataclass, field

from fizbuz.contract import MAX_INPUT, MIN_INPUT, MODEL_NAME, PREDICT_PATH, expected_reply, request_body
from fizbuz.http_client import exchange
from fizbuz.lifecycle import wait_until

V2_INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"


def v2_body(number):
    """A v2 REST infer request (JSON) for one number, labels only."""
    return json.dumps(
        {
            "inputs": [{"name": "input.1", "datatype": "INT64", "shape": [1, 1], "data": [number]}],
            "outputs": [{"name": "next_number"}],
        }
    )


# What a reused connection the server had closed looks like before a reply starts.
NO_REPLY = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


def tls_context(cafile):
    return ssl.create_default_context(cafile=str(cafile))


def request(url_host, port, method, path, cafile, token=None, body=None, headers=None, timeout=30):
    """One HTTPS request to the front door: (status, headers dict, text) or (None, {}, reason)."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        sent.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    return exchange(method, f"https://{url_host}:{port}{path}", timeout, body, sent, cafile)


@dataclass
class LoadResult:
    sent: int = 0
    answered: int = 0
    resent: int = 0
    failed: list = field(default_factory=list)  # (n, status, text)
    wrong: list = field(default_factory=list)  # (n, reply)
    latencies: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self):
        ordered = sorted(self.latencies) or [0.0]
        pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": len(self.failed),
            "wrong": len(self.wrong),
            "resent": self.resent,
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
            "max_ms": round(ordered[-1] * 1000, 2),
            "failure_samples": [f"{s} {t[:80]}" for _, s, t in self.failed[:5]],
        }


class Load:
    """Run `concurrency` clients until stop(); every answer is checked."""

    def __init__(self, host, port, cafile, token, concurrency=32, timeout=60, numbers=None, protocol="card"):
        """protocol: "card" (the book's path, one number a request) or "v2" (the
        Open Inference Protocol's REST infer, one number a request, JSON)."""
        if protocol not in ("card", "v2"):
            raise ValueError(f"protocol must be card or v2, not {protocol!r}")
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self.protocol = protocol
        self.path = PREDICT_PATH if protocol == "card" else V2_INFER_PATH
        self.context = tls_context(cafile)
        self.concurrency = concurrency
        self.numbers = numbers
        self.result = LoadResult()
        self._stop = threading.Event()
        self._threads = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_for_answers(self, count, timeout=60):
        wait_until(lambda: self.result.answered >= count, timeout, f"{count} answers", interval=0.02)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 10)
        return self.result

    def _connect(self):
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)

    def _send(self, connection, body):
        connection.request(
            "POST",
            self.path,
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        return connection.getresponse()  # the status line: nothing of the reply before it

    def _client(self, index):
        rng = random.Random(index)
        connection, used = self._connect(), False
        position = index
        while not self._stop.is_set():
            if self.numbers is not None:
                number = self.numbers[position % len(self.numbers)]
                position += self.concurrency
            else:
                number = rng.randrange(MIN_INPUT, MAX_INPUT + 1)
            body = request_body(number) if self.protocol == "card" else v2_body(number)
            started = time.monotonic()
            try:
                try:
                    response = self._send(connection, body)
                except NO_REPLY:
                    if not used:
                        raise
                    # The server closed this idle keep-alive connection without reading the request.
                    connection.close()
                    connection = self._connect()
                    with self.result.lock:
                        self.result.resent += 1
                    response = self._send(connection, body)
                status, raw = response.status, response.read()
                used = True
            except (OSError, http.client.HTTPException) as error:
                status, raw = None, f"{type(error).__name__}: {error}".encode()
                connection.close()
                connection, used = self._connect(), False
            elapsed = time.monotonic() - started
            with self.result.lock:
                self.result.sent += 1
                self.result.latencies.append(elapsed)
                if status != 200:
                    self.result.failed.append((number, status, raw.decode("utf-8", "replace")))
                    continue
                self.result.answered += 1
                try:
                    reply = json.loads(raw)
                except ValueError:
                    reply = raw
                if not self._right(number, reply):
                    self.result.wrong.append((number, reply))
        connection.close()

    def _right(self, number, reply):
        if self.protocol == "card":
            return reply == expected_reply(number)
        try:
            return reply["outputs"][0]["data"] == [expected_reply(number)["next_number"]]
        except (TypeError, KeyError, IndexError):
            return False
