"""Faults and updates under 32 answer-checking clients through the front door:
a killed container (Swarm replaces it), a rolling update to a new image tag,
and a broken image (its health check fails) that Swarm rolls back. Not one
request may fail."""

import logging

import pytest

from fizbuz.lifecycle import LifecycleError, wait_until

pytestmark = [pytest.mark.containers, pytest.mark.slow]
log = logging.getLogger(__name__)


def check(summary):
    log.info("load through the front door: %s", summary)
    assert summary["sent"] > 0 and summary["failed"] == 0 and summary["wrong"] == 0, summary["failure_samples"]


def test_a_killed_container_is_replaced_by_swarm_and_no_request_fails(running_stack):
    before = running_stack.mms_containers()
    assert len(before) == 2
    victim = before[0]
    with running_stack.load(32) as load:
        load.wait_for_answers(500)
        running_stack.docker.run("kill", victim)  # SIGKILL to the whole container
        # Swarm starts a new task; it counts once its health check passes.
        try:
            wait_until(
                lambda: victim not in running_stack.mms_containers() and len(running_stack.healthy()) == 2,
                180,
                "Swarm to replace the killed task",
                interval=1,
            )
        except LifecycleError:
            log.error("the MMS tasks when the wait ended:\n%s", running_stack.task_report())
            raise
        load.wait_for_answers(load.result.answered + 500)
    check(load.result.summary())
    after = running_stack.mms_containers()
    assert victim not in after and len(after) == 2
    running_stack.door_follows_the_tasks()  # the new task is in its upstream, the killed one gone


def test_a_rolling_update_under_load_fails_no_request_and_the_new_version_answers(
    running_stack, mar_path, make_archive, stack_dir
):
    (stack_dir / "v2").mkdir()
    new_mar = make_archive(mar_path, stack_dir / "v2" / "fizbuz_package.mar", modelVersion="2.0")
    with running_stack.load(32) as load:
        load.wait_for_answers(500)
        result = running_stack.stack.update(new_mar, version="v2")
        load.wait_for_answers(load.result.answered + 500)
    check(load.result.summary())
    assert result == "completed"
    containers = running_stack.mms_containers()
    assert len(containers) == 2
    for container in containers:
        assert running_stack.image_of(container) == "fizbuz-mms:v2"
        assert running_stack.describe_model(container)["modelVersion"] == "2.0"
    status, _, text = running_stack.predict(14)
    assert status == 200 and "FizzBuzz" in text


def test_a_broken_image_is_rolled_back_and_no_request_fails(running_stack, mar_path, make_archive, stack_dir):
    serving = running_stack.refresh().state["mms_image"]
    (stack_dir / "broken").mkdir()
    broken = make_archive(
        mar_path, stack_dir / "broken" / "fizbuz_package.mar", swap_labels=True, modelVersion="9.9-broken"
    )
    with running_stack.load(32) as load:
        load.wait_for_answers(500)
        result = running_stack.stack.update(broken, version="broken")
        load.wait_for_answers(load.result.answered + 500)
    check(load.result.summary())
    assert result.startswith("rollback")
    assert running_stack.refresh().state["mms_image"] == serving
    containers = running_stack.mms_containers()
    assert len(containers) == 2
    assert {running_stack.image_of(c) for c in containers} == {serving}
