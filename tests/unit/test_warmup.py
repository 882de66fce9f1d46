"""serving.mms.cli.warm_up: every input N times, every answer checked, before a
server counts as ready; a wrong answer fails the start."""

import collections
import json

import pytest
from aiohttp import web

from fizbuz.answers import expected_label
from fizbuz.contract import INPUT_KEY, MAX_INPUT, MIN_INPUT, OUTPUT_KEY, PREDICT_PATH
from fizbuz.lifecycle import LifecycleError
from serving.mms import cli
from stub_server import StubServer


class Counting(StubServer):
    def __init__(self, wrong_at=None):
        super().__init__()
        self.asked = collections.Counter()
        self.wrong_at = wrong_at

    async def predict(self, request):
        number = json.loads(await request.read())[INPUT_KEY]
        self.asked[number] += 1
        label = "wrong" if number == self.wrong_at else expected_label(number)
        return web.json_response({OUTPUT_KEY: label})

    def routes(self, app):
        app.router.add_post(PREDICT_PATH, self.predict)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{PREDICT_PATH}"


def test_every_input_is_asked_once_per_pass():
    with Counting() as server:
        cli.warm_up(server.url, 2)
    assert set(server.asked) == set(range(MIN_INPUT, MAX_INPUT + 1))
    assert set(server.asked.values()) == {2}


def test_past_its_budget_no_new_pass_begins_but_the_first_is_whole():
    with Counting() as server:
        cli.warm_up(server.url, 5, budget_s=0.0)
    assert set(server.asked.values()) == {1} and len(server.asked) == MAX_INPUT + 1


def test_no_passes_sends_nothing():
    with Counting() as server:
        cli.warm_up(server.url, 0)
    assert sum(server.asked.values()) == 0


def test_a_wrong_answer_fails_the_start():
    with Counting(wrong_at=500) as server, pytest.raises(LifecycleError, match=r"1 of 1023 answers wrong.*n=500"):
        cli.warm_up(server.url, 1)


def test_the_flag_is_bounded(monkeypatch):
    monkeypatch.delenv("FIZBUZ_MMS_WARMUP", raising=False)
    args = cli.build_parser().parse_args(["start"])
    assert args.warmup == 4  # the shipped default
    args = cli.build_parser().parse_args(["start", "--warmup", "101"])
    with pytest.raises(LifecycleError, match="0..100"):
        cli.validate(args)
