"""Adaptive batching (issue 13): the front door sends a lone client's requests
to each host's batch-1 registration and a burst to the batched one. Where each
request went is read from the hosts' Prometheus exporters (the handler's batch
count, labelled with the registration's model name), never from timing. (MMS's
per-batch PredictionTime lines are off by default since issue 25.)"""

import pytest

from fizbuz.contract import MODEL_NAME, SINGLE_MODEL_NAME
from fizbuz.lifecycle import LifecycleError, wait_until
from serving.front.config import FrontSettings
from serving.front.fleet import FleetError
from serving.front.network import run_in
from serving.metrics.scrape import scrape

pytestmark = pytest.mark.e2e


def batches(fleet):
    """{model name: batches the handler ran, over every host}."""
    counts = {MODEL_NAME: 0, SINGLE_MODEL_NAME: 0}
    for host in fleet.hosts:
        samples = run_in(host.namespace, scrape, f"http://127.0.0.1:{host.metrics_port}/metrics")
        for name in counts:
            counts[name] += samples.total("fizbuz_batch_size_count", model=name)
    return counts


def answered(fleet):
    """{model name: requests answered} from the hosts' metrics exporters (the
    handler's counter, labelled with the name the model was registered under)."""
    counts = {MODEL_NAME: 0, SINGLE_MODEL_NAME: 0}
    for host in fleet.hosts:
        samples = run_in(host.namespace, scrape, f"http://127.0.0.1:{host.metrics_port}/metrics")
        for name in counts:
            counts[name] += samples.total("fizbuz_requests_total", model=name, status="2xx")
    return counts


def added(fleet, before, expect_at_least):
    """Batches counted since `before`, once (polled) at least `expect_at_least`
    of them are there."""

    def counted():
        now = batches(fleet)
        delta = {name: now[name] - before[name] for name in now}
        return delta if sum(delta.values()) >= expect_at_least else None

    try:
        return wait_until(counted, 15, f"{expect_at_least} batches in the hosts' metrics", interval=0.2)
    except LifecycleError:
        now = batches(fleet)
        return {name: now[name] - before[name] for name in now}


def check(summary):
    assert summary["sent"] > 0 and summary["failed"] == 0 and summary["wrong"] == 0, summary["failure_samples"]


@pytest.fixture
def routing(fleet):
    """Change the front door's routing for one test; put the shipped one back."""
    fleet.healthy()
    yield lambda **changes: fleet.fleet.update_front(**changes)
    fleet.fleet.update_front(routing=FrontSettings.routing, adaptive_threshold=FrontSettings.adaptive_threshold)


def test_a_lone_client_goes_to_batch_1_and_a_burst_is_batched(fleet, routing):
    routing(routing="adaptive", adaptive_threshold=2)
    before, counted_before = batches(fleet), answered(fleet)
    with fleet.load(1) as load:
        load.wait_for_answers(40)
    lone = load.result.summary()
    check(lone)
    delta = added(fleet, before, lone["sent"])
    # Every request of the lone client was its own batch on a batch-1 registration; none batched.
    assert delta == {MODEL_NAME: 0, SINGLE_MODEL_NAME: lone["sent"]}, (delta, lone)
    counted = answered(fleet)
    assert {name: counted[name] - counted_before[name] for name in counted} == delta

    before = batches(fleet)
    with fleet.load(32) as load:
        load.wait_for_answers(2000)
    burst = load.result.summary()
    check(burst)
    delta = added(fleet, before, 1)
    # Batched, apart from the few requests sent while the 32 connections were
    # still being opened or closed (at most 2 open: below the threshold).
    assert delta[MODEL_NAME] > 0, delta
    assert delta[SINGLE_MODEL_NAME] <= 0.02 * burst["sent"], (delta, burst)


def test_batched_only_sends_even_a_lone_client_to_the_batched_registration(fleet, routing):
    routing(routing="batched")
    before = batches(fleet)
    with fleet.load(1) as load:
        load.wait_for_answers(20)
    lone = load.result.summary()
    check(lone)
    assert added(fleet, before, lone["sent"]) == {MODEL_NAME: lone["sent"], SINGLE_MODEL_NAME: 0}


def test_bad_routing_settings_are_refused_and_nothing_changes(fleet, routing):
    saved = fleet.fleet.require()["front"]
    for changes in ({"routing": "sometimes"}, {"adaptive_threshold": 0}):
        with pytest.raises(FleetError):
            routing(**changes)
    assert fleet.fleet.require()["front"] == saved
    assert fleet.fleet.ready()[0] == 200
