"""Faults under load through the front door: 0 failed, 0 wrong, bounded latency.

Each test starts from a healthy fleet and leaves it healthy (restarting what it broke).
"""

import time

import psutil
import pytest

from fizbuz.lifecycle import wait_until
from serving.front import network
from serving.front.config import static_upstream

pytestmark = pytest.mark.e2e


def check(summary, fleet, after):
    """0 failed, 0 wrong, and latency bounded by construction rather than by a stopwatch:
    no request of the load took more tries than the front door allows (its own tries,
    then the one 507 retry), each try being bounded by the connect and read timeouts."""
    print(summary)  # the figures, for the report (pytest -s)
    assert summary["sent"] > 0
    if summary["failed"]:
        failed_lines = fleet.access_log_lines(predicate=lambda l: '" 200 ' not in l)[-20:]
        pytest.fail(f"{summary['failed']} failed: {summary['failure_samples']}\n" + "\n".join(failed_lines))
    assert summary["wrong"] == 0

    def load_lines():  # every request of the load is in the (buffered) access log
        found = [l for l in fleet.fleet.door.access_log.read_text().splitlines()[after:] if "POST /predictions" in l]
        return found if len(found) >= summary["sent"] else None

    lines = wait_until(load_lines, 30, "the load's lines in the access log")
    most = static_upstream(fleet.settings).tries + 1
    assert [l for l in lines if len(fleet.upstream_statuses(l)) > most] == []


def test_kill_9_of_a_worker_under_32_clients(fleet):
    fleet.healthy()
    metrics_before = fleet.front_metrics()
    after = fleet.access_log_size()
    with fleet.load(32) as load:
        load.wait_for_answers(1000)
        # A worker between batches loses nothing: kill (at most 3 times) until
        # one kill hit a batch and the access log shows the front door retried.
        for _ in range(3):
            fleet.kill_a_batched_worker(fleet.hosts[0])
            load.wait_for_answers(load.result.answered + 500)
            if fleet.retried_lines(after):
                break
        load.wait_for_answers(load.result.answered + 1000)
    metrics_after = fleet.front_metrics()  # also: every line of this load is in the logs now
    check(load.result.summary(), fleet, after)
    lines = fleet.retried_lines(after)
    assert lines, "no kill hit a batch: nothing was retried"
    print(f"{len(lines)} requests retried, e.g. {lines[0]}")
    for line in lines:  # always on the other host
        first, second = line.split("upstream=")[1].split(" ustatus=")[0].replace(" : ", ", ").split(", ")[:2]
        assert first != second, line
    # The front door's metrics counted exactly these retries, by path (507 goes through error_page).
    retried = "fizbuz_front_retried_requests_total"
    by_error_page = sum(" : " in line.split("ustatus=")[1] for line in lines)
    assert metrics_after.total(retried) - metrics_before.total(retried) == len(lines)
    assert (
        metrics_after.total(retried, via="error_page_507") - metrics_before.total(retried, via="error_page_507")
        == by_error_page
    )


def test_kill_9_of_a_worker_while_the_other_host_is_drained(fleet):
    """During a rolling update one host serves alone: a retry then goes to it again."""
    fleet.healthy()
    drained, alone = fleet.hosts[0], fleet.hosts[1]
    fleet.fleet.drain(drained)
    after = fleet.access_log_size()
    try:
        with fleet.load(32) as load:
            load.wait_for_answers(1000)
            for _ in range(3):
                fleet.kill_a_batched_worker(alone)
                load.wait_for_answers(load.result.answered + 500)
                if fleet.retried_lines(after):
                    break
            load.wait_for_answers(load.result.answered + 500)
    finally:
        fleet.fleet.drain(drained, drained=False)
    check(load.result.summary(), fleet, after)
    lines = fleet.retried_lines(after)
    assert lines, "no kill hit a batch: nothing was retried"
    assert not any(drained.upstream in l for l in lines)
    print(f"{len(lines)} requests retried on the lone host, e.g. {lines[-1]}")


def test_kill_9_of_a_whole_hosts_mms_under_load(fleet):
    fleet.healthy()
    host = fleet.hosts[0]
    after = fleet.access_log_size()
    with fleet.load(32) as load:
        load.wait_for_answers(1000)
        family = [host.frontend()] + list(host.worker_processes().values())
        for process in family:
            process.kill()
        psutil.wait_procs(family, timeout=10)
        answered = load.result.answered
        load.wait_for_answers(answered + 3000)  # served by the other host alone
    check(load.result.summary(), fleet, after)
    # The kill met requests in flight on that host, and the other host answered them.
    assert fleet.retried_lines(after), "the kill met no request in flight: nothing was retried"
    assert not host.serving()
    fleet.healthy()  # fleet start restarts the dead host's MMS in its namespace
    assert host.serving() and host.wrong_answers() == []


def test_a_hosts_link_taken_down_under_load(fleet):
    fleet.healthy()
    if fleet.state["mode"] != "netns":
        pytest.skip("needs network namespaces (root)")
    layout = fleet.fleet.layout(fleet.state)
    host = fleet.hosts[1]
    after = fleet.access_log_size()
    with fleet.load(32) as load:
        load.wait_for_answers(1000)
        network.set_link(layout, host.index, up=False)
        try:
            answered = load.result.answered
            load.wait_for_answers(answered + 3000, timeout=120)
        finally:
            network.set_link(layout, host.index, up=True)
        answered = load.result.answered
        load.wait_for_answers(answered + 500)
    check(load.result.summary(), fleet, after)
    # Tries that met the dead link (timed out or refused) went on to the other host.
    assert fleet.retried_lines(after), "no request met the dead link: nothing was retried"
    wait_until(host.serving, 30, "the host to answer again over its link")


@pytest.mark.slow
def test_a_worker_killed_every_few_seconds_on_alternate_hosts(fleet):
    """Ten kills in a row under 32 clients (the 10-minute soak is bench/front_soak.py).
    Kills are spaced by more than two read timeouts: the front door retries once,
    so one request's two tries must not both meet a kill."""
    fleet.healthy()
    after = fleet.access_log_size()
    spacing = 2 * fleet.settings.read_timeout + 1
    with fleet.load(32) as load:
        load.wait_for_answers(1000)
        for kill in range(10):
            next_kill = time.monotonic() + spacing
            fleet.kill_a_batched_worker(fleet.hosts[kill % 2])
            # Pacing, not readiness (kill_a_batched_worker waited for the new worker): the
            # kills' spacing is what this test is about.
            time.sleep(max(0.0, next_kill - time.monotonic()))
    check(load.result.summary(), fleet, after)
    assert fleet.retried_lines(after), "no kill of ten hit a batch: nothing was retried"
