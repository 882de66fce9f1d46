"""Graceful when overwhelmed (issue 23): open-loop load at 0.5x, 1x, 2x and 4x a
host's capacity, through the front door.

Capacity is made small on purpose so this box can offer several times it: one
host, one worker, batch 1, and a test-only archive whose handler sleeps
SLEEP_MS per batch (fizbuz.archive.variant); the front door admits ADMISSION
requests per host entry. Asserts counts and states only: every request is
answered right or refused explicitly (503/429 with Retry-After), none timed
out, none is wrong, none failed on the connection; at 4x the refusals did
happen (the overload hit), the hosts were tried at most 1.1 times per request
(the access log), no worker died, no host was marked failed (the error log),
and right after the overload the next requests are admitted and answered right.
"""

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from fizbuz.contract import expected_reply, request_body
from fizbuz.lifecycle import wait_until
from loadtest import openloop

pytestmark = pytest.mark.slow

SECONDS = 4.0
ALLOWED = {"right", "5xx:503", "4xx:429"}  # answered right, or refused explicitly
ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+:\d+$")


def tries(line):
    """Upstream tries in an access-log line: host addresses only (a group's name
    stands where nginx found every host at its cap: no try was made)."""
    field = line.split(" upstream=")[1].split(" ")[0] if " upstream=" in line else ""
    return sum(bool(ADDRESS.match(part.strip())) for part in re.split(r"[,:] ", field))


def mark(fleet):
    """A marker request (a 404 nobody else sends); returns how many access-log
    lines there are up to it, once it is written: with one nginx worker (one
    buffer), every earlier request's line is then in the file too."""
    marker = f"/overload-mark-{uuid.uuid4().hex}"
    fleet.request("GET", marker)
    return wait_until(
        lambda: next(
            (
                index + 1
                for index, line in enumerate(fleet.fleet.door.access_log.read_text().splitlines())
                if marker in line
            ),
            None,
        ),
        10,
        "the marker line",
    )


def offer(fleet, rate, protocol="card"):
    target = openloop.Target(f"https://{fleet.address}:{fleet.port}", protocol, fleet.token, fleet.cafile, timeout=30.0)
    return openloop.run_sync(target, rate, SECONDS, warm=16)


def check_answered_or_refused(outcomes):
    assert set(outcomes.classes) <= ALLOWED, outcomes.summary()
    assert not outcomes.without_retry_after, outcomes.summary()
    assert outcomes.cap_hit == 0 and outcomes.sent == outcomes.scheduled


def test_past_capacity_every_request_is_answered_or_refused_fast_and_the_door_recovers(small_fleet):
    host = small_fleet.hosts[0]
    workers_before = {wid: p.pid for wid, p in host.worker_processes().items()}
    # Capacity: what the host serves right when offered far more than it can do.
    capacity = offer(small_fleet, 1000 / small_fleet.sleep_ms * 4).classes["right"] / SECONDS
    assert capacity > 0
    log_start = mark(small_fleet)
    runs = {}
    for factor in (0.5, 1, 2, 4):
        runs[factor] = offer(small_fleet, capacity * factor)
        check_answered_or_refused(runs[factor])
    assert runs[4].rejected > 0, "4x capacity was never refused: the overload did not hit"
    assert runs[0.5].classes["right"] > 0 and runs[4].classes["right"] > 0

    # Recovery: the next requests, one at a time, are admitted and right.
    for number in range(20):
        status, _, text = small_fleet.predict(number)
        assert (status, openloop.json.loads(text)) == (200, expected_reply(number))

    # Tries per request at 4x (and over every run): no retry storm.
    sent = sum(run.sent for run in runs.values()) + 20
    log_end = mark(small_fleet)
    lines = [l for l in small_fleet.fleet.door.access_log.read_text().splitlines()[log_start:log_end] if '"POST ' in l]
    assert len(lines) == sent
    assert sum(tries(line) for line in lines) <= 1.1 * len(lines)
    refused = [l for l in lines if '" 503 ' in l]
    assert refused and all(tries(l) == 0 for l in refused)  # a refusal for load never reached the host

    # States: no worker died, no host was marked failed for being busy.
    assert {wid: p.pid for wid, p in host.worker_processes().items()} == workers_before
    errors = small_fleet.fleet.door.logs.joinpath("error.log").read_text()
    assert "temporarily disabled" not in errors and "upstream timed out" not in errors


def test_v2_refusals_are_v2_errors_with_retry_after(small_fleet):
    outcomes = offer(small_fleet, 1000 / small_fleet.sleep_ms * 4, protocol="v2")
    check_answered_or_refused(outcomes)
    assert outcomes.rejected > 0
    refusal = openloop.json.loads(outcomes.samples["5xx:503"])
    assert set(refusal) >= {"error"} and "overloaded" in refusal["error"]


def test_a_request_whose_deadline_passed_is_refused_not_run(small_fleet):
    # Four at once on one worker that takes sleep_ms per request: the third and
    # fourth wait at least sleep_ms in MMS's queue, longer than their budget.
    with ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(
                lambda n: small_fleet.request(
                    body=request_body(n),
                    headers={"Content-Type": "application/json", "Timeout-Ms": str(small_fleet.sleep_ms // 2)},
                ),
                range(4),
            )
        )
    refused = [(headers, text) for status, headers, text in replies if status == 503]
    answered = [(n, text) for n, (status, _, text) in enumerate(replies) if status == 200]
    assert len(refused) >= 2 and len(refused) + len(answered) == 4
    assert all(
        headers.get("retry-after") == "1" and "deadline passed" in openloop.json.loads(text)["error"]
        for headers, text in refused
    )
    assert all(openloop.json.loads(text) == expected_reply(n) for n, text in answered)
    status, _, text = small_fleet.request(
        body=request_body(14), headers={"Content-Type": "application/json", "Timeout-Ms": "5000"}
    )
    assert (status, openloop.json.loads(text)) == (200, expected_reply(14))
    status, headers, text = small_fleet.request(
        body=request_body(14), headers={"Content-Type": "application/json", "Timeout-Ms": "soon"}
    )
    assert status == 400 and "Timeout-Ms" in text
