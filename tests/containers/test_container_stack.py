"""The stack through its front door: every input, the contract's errors, the
images' promises (non-root, a health check that predicts)."""

import json

import pytest

from fizbuz import answers
from fizbuz.contract import MAX_INPUT, MIN_INPUT
from fizbuz.lifecycle import wait_until

pytestmark = [pytest.mark.containers, pytest.mark.slow]


def test_every_input_is_answered_right_through_the_front_door(running_stack):
    numbers = range(MIN_INPUT, MAX_INPUT + 1)
    assert answers.ask_all(lambda n: running_stack.predict(n)[::2], numbers, threads=1) == []
    assert MAX_INPUT - MIN_INPUT + 1 == 1023


def test_bad_input_and_missing_token_get_json_errors(running_stack):
    status, headers, text = running_stack.predict(MAX_INPUT + 1)
    assert status == 400 and "between 0 and 1022" in json.loads(text)["error"]
    assert headers["content-type"] == "application/json"
    status, headers, text = running_stack.predict(14, token=None)
    assert status == 401 and "bearer" in headers["www-authenticate"].lower()


def test_replicas_are_healthy_and_run_as_non_root(running_stack):
    # Swarm may be replacing a task that a loaded machine made miss a health
    # check; the stack converges to its replica count.
    replicas = running_stack.state["options"]["replicas"]

    def settled():
        found = running_stack.mms_containers()
        return found if len(found) == replicas else None

    containers = wait_until(settled, 120, f"{replicas} MMS containers")
    assert len(containers) == replicas == 2
    assert sorted(running_stack.healthy()) == sorted(containers)
    for container in containers:
        assert running_stack.docker.run("exec", container, "id", "-u").strip() != "0"
        # The image's HEALTHCHECK is real predictions (the card's and a v2 call), not /ping.
        check = running_stack.docker.run("inspect", "--format", "{{json .Config.Healthcheck.Test}}", container)
        assert "serving.containers.health" in check
        said = running_stack.docker.run("exec", container, "python3", "-m", "serving.containers.health")
        assert "healthy: 4 right answers" in said and "4 through v2 (ModelInfer, JSON)" in said
