"""The open-loop generator keeps its schedule whatever is outstanding, checks
every answer and classifies it, measures latency from the scheduled time, and
says when a rejection lacked Retry-After.

Against a small local aiohttp server in a thread (free loopback port, stopped
on leaving) that answers the card's and v2's requests right, wrong on purpose,
with a 503 (with or without Retry-After), or late."""

import asyncio
import json

import pytest
from aiohttp import web

import fizbuz_v2
from fizbuz.answers import expected_label
from fizbuz.contract import INPUT_KEY, OUTPUT_KEY, PREDICT_PATH
from fizbuz.lifecycle import free_port
from loadtest import openloop
from stub_server import StubServer

WRONG_AT, BUSY_AT, BARE_BUSY_AT = 3, 5, 6  # answered wrong / 503 + Retry-After / 503 without it


class Server(StubServer):
    def __init__(self, delay=0.0):
        super().__init__()
        self.delay = delay
        self.in_flight = self.most_in_flight = 0

    async def _answer(self, number, reply):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if number == BUSY_AT:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"})
        if number == BARE_BUSY_AT:
            return web.json_response({"error": "busy"}, status=503)
        label = "wrong" if number == WRONG_AT else expected_label(number)
        return web.json_response(reply(label))

    async def card(self, request):
        number = (await request.json())[INPUT_KEY]
        return await self._answer(number, lambda label: {OUTPUT_KEY: label})

    async def v2(self, request):
        number = (await request.json())["inputs"][0]["data"][0]
        return await self._answer(
            number,
            lambda label: {
                "model_name": fizbuz_v2.MODEL_NAME,
                "outputs": [{"name": fizbuz_v2.LABEL_OUTPUT, "datatype": "BYTES", "shape": [1, 1], "data": [label]}],
            },
        )

    def routes(self, app):
        app.router.add_post(PREDICT_PATH, self.card)
        app.router.add_post(openloop.V2_INFER_PATH, self.v2)


def test_constant_and_poisson_schedules():
    constant = openloop.schedule(100, 2.0, "constant")
    assert len(constant) == 200 and constant[1] - constant[0] == pytest.approx(0.01)
    poisson = openloop.schedule(1000, 5.0, "poisson", seed=1)
    assert poisson == sorted(poisson) and all(0 < t < 5.0 for t in poisson)
    assert 4500 < len(poisson) < 5500  # about rate x duration
    assert poisson == openloop.schedule(1000, 5.0, "poisson", seed=1)  # seeded
    with pytest.raises(ValueError):
        openloop.schedule(0, 1, "constant")


@pytest.mark.parametrize("protocol", openloop.PROTOCOLS)
def test_every_answer_is_checked_and_classified(protocol):
    with Server() as server:
        target = openloop.Target(f"http://127.0.0.1:{server.port}", protocol)
        outcomes = openloop.run_sync(target, rate=200, duration=0.1)  # numbers 0..19
    assert outcomes.scheduled == outcomes.sent == 20
    assert outcomes.classes == {"right": 17, "wrong": 1, "5xx:503": 2}
    assert outcomes.rejected == 2
    assert outcomes.without_retry_after == {"5xx:503": 1}
    assert json.loads(outcomes.samples["wrong"]) != {}


def test_sends_do_not_wait_for_answers_and_latency_counts_from_the_schedule():
    # Each answer takes 0.3 s; at 100/s a closed-loop client with one connection
    # would send ~3 in 0.3 s. Open loop: every scheduled request leaves on time.
    with Server(delay=0.3) as server:
        target = openloop.Target(f"http://127.0.0.1:{server.port}")
        outcomes = openloop.run_sync(target, rate=100, duration=0.5)
    assert outcomes.sent == 50 and outcomes.cap_hit == 0
    assert server.most_in_flight >= 20  # many outstanding at once
    assert min(outcomes.latencies["right"]) >= 0.3


def test_the_cap_on_outstanding_requests_is_counted():
    with Server(delay=0.3) as server:
        target = openloop.Target(f"http://127.0.0.1:{server.port}")
        outcomes = openloop.run_sync(target, rate=100, duration=0.2, max_outstanding=5)
    assert outcomes.sent == 5 and outcomes.cap_hit == 15
    assert server.most_in_flight <= 5


def test_a_refused_connection_and_a_timeout_are_their_own_classes():
    refused = openloop.run_sync(openloop.Target(f"http://127.0.0.1:{free_port()}"), rate=50, duration=0.1)
    assert refused.classes == {"connection_error": 5}
    with Server(delay=2.0) as server:
        slow = openloop.run_sync(openloop.Target(f"http://127.0.0.1:{server.port}", timeout=0.2), rate=50, duration=0.1)
    assert slow.classes == {"timeout": 5}


def test_late_sends_are_reported_as_the_generator_falling_behind():
    outcomes = openloop.Outcomes(send_lags=[0.0] * 90 + [0.05] * 10)
    assert outcomes.behind_schedule and outcomes.summary()["late_sends"] == 10
    assert not openloop.Outcomes(send_lags=[0.001] * 100).behind_schedule
