"""The multi-node cluster's faults, each as one function: inject the fault, see
that it hit (Swarm's own view: the node Down, drained, tasks replaced), wait
until the MMS tasks are back to the desired count on the nodes left, heal, wait
until the swarm has settled (a Leader, every node Ready and Active, every other
manager Reachable, three readings in a row: a node that comes back can start an
election), and say how long each part took.

Used by the fault tests (tests/multinode, under 32 answer-checking clients) and
by bench/multinode_bench.py (the fault table)."""

import dataclasses
import logging
import time

from fizbuz.lifecycle import LifecycleError, wait_until

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FaultResult:
    fault: str
    node: str
    hit: str  # what showed the fault landed (Swarm's view)
    recovered_s: float  # from the fault to the desired task count on the other nodes
    healed_s: float  # from the fault to the node back (Ready, Active)


def _wait(cluster, condition, timeout, what):
    try:
        return wait_until(condition, timeout, what, interval=1, not_yet=(LifecycleError,))
    except LifecycleError:
        log.error("the cluster when the wait for %s ended:\n%s", what, cluster.status())
        raise


def _elsewhere(cluster, victim, replicas):
    """The desired count of running MMS tasks on the nodes but `victim`."""
    return sum(n for node, n in cluster.running_tasks().items() if node != victim.name) >= replicas


def _settle(cluster, timeout):
    _wait(cluster, cluster.settled, timeout, "the swarm settled (a Leader, every node Ready, Active, Reachable)")


def _node_is(cluster, node, *fields):
    return cluster.node_states().get(node.name, ())[: len(fields)] == fields


def drain(cluster, victim, timeout=300):
    """`docker node update --availability drain`, then active again."""
    replicas = cluster.require()["options"]["replicas"]
    started = time.monotonic()
    cluster.set_availability(victim, "drain")
    try:
        _wait(
            cluster,
            lambda: _node_is(cluster, victim, "Ready", "Drain") and not cluster.running_tasks().get(victim.name),
            timeout,
            f"{victim.name} drained, no task left",
        )
        _wait(cluster, lambda: _elsewhere(cluster, victim, replicas), timeout, "the tasks on the other nodes")
        recovered = time.monotonic() - started
    finally:
        cluster.set_availability(victim, "active")
    _settle(cluster, timeout)
    return FaultResult(
        "node drained", victim.name, "Swarm showed the node Drain with no task", recovered, time.monotonic() - started
    )


def cut_network(cluster, victim, timeout=300):
    """The node's only link down (at the host's end of its veth), then up."""
    replicas = cluster.require()["options"]["replicas"]
    started = time.monotonic()
    victim.link(up=False)
    try:
        _wait(cluster, lambda: _node_is(cluster, victim, "Down"), timeout, f"{victim.name} seen Down")
        _wait(cluster, lambda: _elsewhere(cluster, victim, replicas), timeout, "the tasks on the other nodes")
        recovered = time.monotonic() - started
    finally:
        victim.link(up=True)
    _settle(cluster, timeout)
    return FaultResult("network cut", victim.name, "Swarm saw the node Down", recovered, time.monotonic() - started)


def kill_engine(cluster, victim, timeout=300):
    """SIGKILL to every process of the node (dockerd, containerd, shims, the
    task): the machine is gone. When the node is a manager, the others must
    keep a quorum to see it and reschedule. Then the engine starts again on
    its data-root and the node rejoins."""
    replicas = cluster.require()["options"]["replicas"]
    started = time.monotonic()
    victim.kill()
    if victim.processes() or victim.answers():
        raise LifecycleError(f"{victim.name} survived the kill")
    expected = ("Down", "Active", "Unreachable") if victim.role == "manager" else ("Down",)
    try:
        _wait(
            cluster, lambda: _node_is(cluster, victim, *expected), timeout, f"{victim.name} seen {' '.join(expected)}"
        )
        _wait(cluster, lambda: _elsewhere(cluster, victim, replicas), timeout, "the tasks on the other nodes")
        recovered = time.monotonic() - started
    finally:
        victim.start_engine()
    _settle(cluster, timeout)
    return FaultResult(
        "engine killed" + (" (a manager of 3)" if victim.role == "manager" else ""),
        victim.name,
        f"Swarm saw the node {' '.join(expected)}",
        recovered,
        time.monotonic() - started,
    )


def rolling_update(cluster, timeout=600):
    """The MMS service rolled across the nodes (a forced update: every task
    replaced, one at a time, start-first, health-gated)."""
    before = {task for task, _, _, _ in cluster.tasks()}
    started = time.monotonic()
    result = cluster.rolling_restart(timeout=timeout)
    if result != "completed":
        raise LifecycleError(f"the rolling update ended in {result}")
    left = before & {task for task, _, _, _ in cluster.tasks()}
    if left:
        raise LifecycleError(f"tasks {left} were not replaced")
    took = time.monotonic() - started
    _settle(cluster, timeout)
    return FaultResult("rolling update", "all", "every task replaced", took, took)
