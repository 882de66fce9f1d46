"""The front door's retry budget (issue 23, serving/front/retry_budget.lua): retries
on another host stay within a share of recent successes plus a small floor.

Two hosts of one worker of batch 1 (a retry goes to the other host), a test-only archive that sleeps 150 ms per
batch (a worker holds its request long enough to be killed while holding it)
and fails every batch holding one input (a first try that fails on purpose, 500, on
any worker). Asserted from the access log (`retry=granted|spent` per request)
and the answers, counts only:

- a burst of failing first tries beyond the budget gets 503 + Retry-After JSON
  instead of retries, and the retries granted stay within share x successes +
  floor x window; with the share budget off, the same burst retries every one
  (the control: the budget is what made the difference);
- a worker killed while holding a request on a quiet door (too few successes
  for the share to pay for a retry) is still retried: 0 failed, the floor paid;
  with the floor at 0 the same kill is refused (the control).
"""

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fizbuz.contract import expected_reply
from fizbuz.lifecycle import wait_until
from serving.front import client
from serving.front.config import RETRY_WINDOW

pytestmark = pytest.mark.slow

SHARE = 0.1


def verdict(line):
    return line.rsplit(" retry=", 1)[1].strip() if " retry=" in line else ""


def post_lines(fleet, after):
    return [l for l in fleet.fleet.door.access_log.read_text().splitlines()[after:] if '"POST ' in l]


def wait_for_lines(fleet, after, count):
    """nginx flushes its access log buffer each second: poll (bounded) until the requests' lines are there."""
    return wait_until(
        lambda: (lines := post_lines(fleet, after)) and len(lines) >= count and lines,
        15,
        f"{count} request lines in the access log",
    )


def successes(lines):
    return sum(1 for l in lines if '" 200 ' in l and l.split(" ustatus=")[1].split(" urt=")[0].endswith("200"))


def burst(fleet, numbers):
    """Every number at once (16 in flight); (number, status, headers, text) each, and the seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda n: (n, *fleet.predict(n)), numbers))
    return replies, time.monotonic() - started


def test_a_worker_killed_on_a_quiet_door_is_still_retried_by_the_floor(budget_fleet):
    fleet, host = budget_fleet, budget_fleet.hosts[0]

    def kill_under_two_clients():
        after = fleet.access_log_size()
        with fleet.load(2, numbers=[n for n in range(64) if n != fleet.fail]) as load:
            load.wait_for_answers(4)
            # A worker between two requests loses nothing: kill (at most 3 times)
            # until a kill met a request (its try failed: the log has a verdict).
            for _ in range(3):
                fleet.kill_a_batched_worker(host)  # it sleeps in each batch: likely holding one
                load.wait_for_answers(load.result.answered + 4)
                if [l for l in post_lines(fleet, after) if verdict(l)]:
                    break
        summary = load.result.summary()
        lines = wait_for_lines(fleet, after, summary["sent"])
        return summary, lines

    summary, lines = kill_under_two_clients()
    assert summary["failed"] == 0 and summary["wrong"] == 0, (
        summary,
        summary["failure_samples"],
        [l for l in lines if '" 200 ' not in l],
    )
    granted = [l for l in lines if verdict(l) == "granted"]
    assert granted, "the kill met no request in flight: nothing was retried"
    assert not [l for l in lines if verdict(l) == "spent"]
    # The share alone could not pay for these retries: the floor did.
    assert len(granted) > budget_fleet.quiet_share * successes(lines)

    # The control: the same kill with no floor is not retried (503 + Retry-After).
    fleet.fleet.update_front(retry_floor=0.0)
    try:
        summary, lines = kill_under_two_clients()
        spent = [l for l in lines if verdict(l) == "spent"]
        assert spent and summary["failed"] >= len(spent), (summary, spent)
        assert all('" 503 ' in l for l in spent)
        # The v2 path's retry (door.js's call, @retry_call) is under the same budget.
        after = fleet.access_log_size()
        status, headers, text = fleet.request(
            path=client.V2_INFER_PATH, body=client.v2_body(fleet.fail), headers={"Content-Type": "application/json"}
        )
        assert status == 503 and headers.get("retry-after") == "1", (status, text)
        assert "retry budget is spent" in json.loads(text)["error"]
        assert [verdict(l) for l in wait_for_lines(fleet, after, 1)] == ["spent"]
    finally:
        fleet.fleet.update_front(retry_floor=budget_fleet.floor)


def test_a_burst_of_failing_first_tries_beyond_the_budget_is_refused_not_retried(budget_fleet):
    fleet = budget_fleet
    fleet.fleet.update_front(retry_share=SHARE)
    good = [n for n in range(1, 61) if n != fleet.fail]
    numbers = [n for pair in zip(good, [fleet.fail] * len(good)) for n in pair]  # every other one fails

    def run():
        after = fleet.access_log_size()
        replies, seconds = burst(fleet, numbers)
        return replies, seconds, wait_for_lines(fleet, after, len(numbers))

    metrics_before = fleet.front_metrics()
    replies, seconds, lines = run()
    metrics_after = fleet.front_metrics()
    for number, status, _, text in replies:
        if number != fleet.fail and status != 503:  # (503: its first try timed out on a loaded box: below)
            assert (status, json.loads(text)) == (200, expected_reply(number))
        else:
            assert status in (500, 503), (status, text)
    unavailable = [(headers, json.loads(text)["error"]) for _, status, headers, text in replies if status == 503]
    assert all(headers.get("retry-after") == "1" for headers, _ in unavailable)
    refused = [error for _, error in unavailable if "retry budget is spent" in error]
    # Any other 503: a granted retry that timed out too (a loaded box): the door's "no host" answer.
    assert all("no model host could answer" in error for _, error in unavailable if error not in refused)
    granted = [l for l in lines if verdict(l) == "granted"]
    spent = [l for l in lines if verdict(l) == "spent"]
    assert refused and len(refused) == len(spent), "the burst never went past the budget"
    # Every failed first try got a verdict (a good request's try can fail too, on a loaded box: a timeout).
    assert len(granted) + len(spent) >= len(good)
    assert all(len(fleet.upstream_statuses(l)) == 1 for l in spent)  # a refused retry was never made
    assert all(len(fleet.upstream_statuses(l)) == 2 for l in granted)
    # The front door's metrics counted the same verdicts.
    counted = "fizbuz_front_retry_budget_total"
    for name, found in (("granted", granted), ("spent", spent)):
        assert metrics_after.total(counted, verdict=name) - metrics_before.total(counted, verdict=name) == len(found)
    # Within share x successes + floor x window, per window the burst spanned
    # (the successes counted: every one so far, at least those of the window).
    all_lines = post_lines(fleet, 0)
    windows = math.ceil((seconds + 1) / RETRY_WINDOW)
    bound = SHARE * successes(all_lines) + budget_fleet.floor * RETRY_WINDOW * windows
    print(
        f"burst of {len(numbers)} in {seconds:.1f} s: {len(granted)} retried, {len(spent)} refused (bound {bound:.1f})"
    )
    assert len(granted) <= bound

    # The control: with the share budget off, every failed first try is retried.
    fleet.fleet.update_front(retry_share=0.0)
    try:
        replies, _, lines = run()
        assert not [l for l in lines if verdict(l)]
        # Every failing request was retried (and failed again, on the other host): no budget's 503.
        # (A retry that timed out on a loaded box gets the door's "no host" 503, never the budget's.)
        assert all(
            status == 500 or (status == 503 and "no model host could answer" in text)
            for number, status, _, text in replies
            if number == fleet.fail
        )
        retried = [l for l in lines if len(fleet.upstream_statuses(l)) == 2]
        assert len(retried) >= len(good) > len(granted)
    finally:
        fleet.fleet.update_front(retry_share=budget_fleet.quiet_share)
