"""The multi-node Swarm (serving/containers/cluster.py) under faults: 32
answer-checking clients through the front door on the edge node (the card's
path or v2 REST) while a node is drained, the MMS service is rolled across the
nodes, a node's network is cut, and a node's engine (a manager of the 3) is
killed with everything it runs. Not one request may fail or be wrong, and the
MMS tasks come back to the desired count on the nodes left. Each fault checks
that it hit (serving/containers/faults.py: Swarm saw the node Down or drained,
every task replaced). Times (max latency, time to recover) are logged, not
asserted; bench/multinode_bench.py measures them."""

import logging

import psutil
import pytest

from fizbuz.contract import PREDICT_PATH, request_body
from fizbuz.lifecycle import live_process, processes_under
from serving.containers import faults
from serving.containers.cluster import FRONT_PORT, leftovers
from serving.front import client

pytestmark = [pytest.mark.multinode, pytest.mark.slow]
log = logging.getLogger(__name__)


def under_load(running_cluster, protocol, fault):
    """Run `fault()` under 32 clients; the load's summary and the fault's result."""
    with running_cluster.load(protocol) as load:
        load.wait_for_answers(300)
        result = fault()
        load.wait_for_answers(load.result.answered + 300)
    summary = load.result.summary()
    log.info("%s: %s; load through the front door (%s): %s", result.fault, result, protocol, summary)
    assert summary["sent"] > 0 and summary["failed"] == 0 and summary["wrong"] == 0, summary["failure_samples"]
    running_cluster.cluster.wait_converged(300)
    assert sum(running_cluster.placement().values()) == running_cluster.replicas
    running_cluster.door_follows_the_tasks()  # the tasks that replaced the lost ones are in its upstream
    return result


def test_the_nodes_join_and_the_tasks_are_placed_by_label(running_cluster):
    rc = running_cluster
    states = rc.cluster.node_states()
    assert set(states) == {node.name for node in rc.nodes}
    assert all(status == "Ready" and availability == "Active" for status, availability, _ in states.values())
    assert sorted(manager for _, _, manager in states.values()) == ["Leader", "Reachable", "Reachable"]
    placement = rc.placement()
    assert placement[rc.edge.name] == 0
    assert [placement[node.name] for node in rc.model_nodes] == [1, 1]  # spread over the model nodes
    assert rc.cluster.running_tasks("front") == {rc.edge.name: 1}
    # Every node that runs a task pulled its image from the cluster's registry.
    registry = rc.cluster.registry_address(rc.state)
    for node in rc.model_nodes:
        pulled = node.docker().run("images", "--format", "{{.Repository}}").split()
        assert f"{registry}/fizbuz-mms" in pulled, pulled
    status, _, text = client.request(
        rc.address,
        FRONT_PORT,
        "POST",
        PREDICT_PATH,
        rc.cafile,
        rc.token,
        request_body(14),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and "FizzBuzz" in text


def test_the_front_door_keeps_its_connections_to_the_tasks(running_cluster):
    """Issue 24: the door's upstream is the tasks' addresses (front_tasks.sh),
    and its connections to them outlive a load and carry the next one: after
    two loads of 300 answers each, connections the first left open are still
    the ones held (per-request lookups would leave none open, and new ports)."""
    rc = running_cluster
    rc.door_follows_the_tasks()
    held = []
    for _ in range(2):
        with rc.load("card") as load:
            load.wait_for_answers(300)
        summary = load.result.summary()
        assert summary["failed"] == 0 and summary["wrong"] == 0, summary["failure_samples"]
        held.append(rc.connections_from_the_door())
        log.info("the front door holds %d connections to the tasks after a load", len(held[-1]))
    first, second = held
    assert first and len(first) < 300, first  # some, not one per request
    assert {address for address, _ in first} == set(rc.task_addresses())  # to every task
    assert first & second, (first, second)  # the same connections carried the second load


def test_a_drained_node_gives_its_task_away_and_no_v2_request_fails(running_cluster):
    running_cluster.spread()
    victim = running_cluster.model_nodes[0]
    under_load(running_cluster, "v2", lambda: faults.drain(running_cluster.cluster, victim))
    assert running_cluster.placement()[victim.name] == 0  # Swarm does not move tasks back by itself


def test_a_rolling_update_across_the_nodes_fails_no_request(running_cluster):
    under_load(running_cluster, "card", lambda: faults.rolling_update(running_cluster.cluster))
    assert running_cluster.placement()[running_cluster.edge.name] == 0


def test_a_cut_network_moves_the_tasks_and_no_request_fails(running_cluster):
    running_cluster.spread()
    victim = running_cluster.model_nodes[1]
    under_load(running_cluster, "card", lambda: faults.cut_network(running_cluster.cluster, victim))


def test_a_killed_engine_loses_a_manager_the_quorum_holds_and_no_v2_request_fails(running_cluster):
    running_cluster.spread()
    victim = running_cluster.model_nodes[1]
    assert victim.role == "manager"
    result = under_load(running_cluster, "v2", lambda: faults.kill_engine(running_cluster.cluster, victim))
    assert "Unreachable" in result.hit
    states = running_cluster.cluster.node_states()
    assert sorted(manager for _, _, manager in states.values()) == ["Leader", "Reachable", "Reachable"]


def test_stop_leaves_nothing_after_a_kill_9_of_its_parts(running_cluster):
    """Last: SIGKILL to the registry, the builder's dockerd and one node's
    dockerd alone (its containerd, shims and task live on, orphaned); stop
    must still find and remove everything: processes, namespaces, links,
    mounts, the iptables rule."""
    rc = running_cluster
    cluster, state = rc.cluster, rc.cluster.require()
    victim = rc.model_nodes[0]
    orphans = [process.pid for process in victim.processes() if process.pid != victim.pid_file.read()]
    assert orphans, "the node runs nothing but dockerd"
    builder = cluster.builder.dockerd(cluster.builder.require())
    orphans += [process.pid for process in processes_under(builder.exec_root)]  # its containerd
    parts = [cluster.registry_pid.process(), builder.pid_file.process(), victim.pid_file.process()]
    assert all(parts), parts
    for process in parts:
        process.kill()
    psutil.wait_procs(parts, timeout=30)
    assert cluster.stop()
    assert leftovers(state) == []
    assert not [pid for pid in orphans if live_process(pid)]
    assert not cluster.state_file.exists()
