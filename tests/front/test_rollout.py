"""Rolling model updates under load: 0 failed, the new version answers after,
and a rollback (asked for, or automatic when a new archive does not serve)."""

import json

import pytest

from fizbuz import archive
from serving.front.rollout import RolloutError, rollback, rollout, versioned_name

pytestmark = pytest.mark.e2e


def registered(host):
    """The archive each of the host's registrations serves: (batched, batch 1)."""
    return tuple((host.describe(name) or {}).get("modelUrl") for name, *_ in host.registrations)


def check(summary):
    print(summary)
    assert summary["sent"] > 0 and summary["failed"] == 0 and summary["wrong"] == 0, summary["failure_samples"]


def test_rollout_then_rollback_under_load(fleet, mar_path, tmp_path):
    fleet.healthy()
    new = archive.variant(mar_path, tmp_path / "fizbuz_package.mar", modelVersion="2.0")
    with fleet.load(32) as load:
        load.wait_for_answers(500)
        rollout(fleet.fleet, new)
        load.wait_for_answers(load.result.answered + 500)
    check(load.result.summary())
    hosts = fleet.hosts
    assert all(len(h.registrations) == 2 for h in hosts)  # adaptive batching: both were re-registered
    assert {registered(h) for h in hosts} == {(versioned_name(new),) * 2}
    assert all(h.wrong_answers() == [] for h in hosts)
    assert fleet.fleet.require()["front"]["drained"] == []
    assert json.loads(fleet.predict(14)[2]) == {"next_number": "FizzBuzz"}

    with fleet.load(32) as load:
        load.wait_for_answers(500)
        rollback(fleet.fleet)
        load.wait_for_answers(load.result.answered + 500)
    check(load.result.summary())
    assert {registered(h) for h in fleet.hosts} == {(versioned_name(mar_path),) * 2}


def test_an_archive_that_answers_wrongly_is_rolled_back(fleet, mar_path, tmp_path):
    fleet.healthy()
    broken = archive.variant(mar_path, tmp_path / "broken.mar", swap_labels=True)
    with fleet.load(32) as load:
        load.wait_for_answers(500)
        with pytest.raises(RolloutError, match="rolled back"):
            rollout(fleet.fleet, broken)
        load.wait_for_answers(load.result.answered + 500)
    check(load.result.summary())
    # Every host serves the archive it had before (under a name kept for rollbacks).
    for host in fleet.hosts:
        batched, single = registered(host)
        assert batched == single and (host.model_store / batched).read_bytes() == mar_path.read_bytes()
    assert all(h.wrong_answers() == [] for h in fleet.hosts)
    assert fleet.fleet.require()["front"]["drained"] == []
