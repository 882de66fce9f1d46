"""One multi-node Swarm for the whole `multinode` tier: three engines, each in a
network namespace of its own (serving/containers/cluster.py), all three
managers (a quorum that survives the loss of one), node 0 the edge (the front
door), nodes 1 and 2 the model nodes (one MMS task each); images built by our
own dockerd on the host and pulled from the cluster's registry. Everything is
removed at the end by the cluster's own `stop` (by its state file), also after
a failed test, and the test checks that the kernel holds none of its names.

The tier is opt-in: these tests run only when the -m expression names
`multinode` (./run_tests.sh runs them as its third stage)."""

import json
import logging
import tempfile
from pathlib import Path

import pytest

from fizbuz.lifecycle import LifecycleError, free_port, live_process, wait_until
from serving.containers.cluster import FRONT_PORT, STATE_FILE, Cluster, ClusterOptions, leftovers
from serving.containers.stack import MMS_PORT, Stack
from serving.front import client, tokens

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def pytest_collection_modifyitems(config, items):
    if "multinode" in (config.getoption("markexpr") or ""):
        return
    mine = [item for item in items if HERE in Path(str(item.fspath)).parents]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]


class RunningCluster:
    """The cluster plus what a test needs to talk to it and to hurt it."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.state = cluster.require()
        self.nodes = cluster.nodes(self.state)
        self.edge, self.model_nodes = self.nodes[0], self.nodes[1:]
        self.address = self.edge.address
        self.cafile = cluster.builder.front_dir / "cert.pem"
        self.token = tokens.read(cluster.builder.token_file)["default"]
        self.replicas = self.state["options"]["replicas"]

    def load(self, protocol="card", concurrency=32):
        return client.Load(self.address, FRONT_PORT, self.cafile, self.token, concurrency, protocol=protocol)

    def placement(self):
        """{node name: running MMS tasks} for the model nodes (0 shown too)."""
        counts = self.cluster.running_tasks()
        return {node.name: counts.get(node.name, 0) for node in self.nodes}

    def spread(self):
        """One task on each model node again (Swarm does not move running tasks
        back after a fault): Cluster.spread (one task more, then one less)."""
        self.cluster.spread(self.model_nodes)
        assert all(self.placement()[n.name] >= 1 for n in self.model_nodes), self.placement()

    def report(self):
        return self.cluster.status()

    # ------------------------------------------------------------ the front door's connections
    def containers(self, service):
        """[(node, container id)] of the service's running containers, on every node."""
        stack, found = self.cluster.builder, []
        for node in self.nodes:
            if node.answers():
                found += [(node, cid) for cid in stack.task_containers(self.state, node.docker(), service)]
        return found

    def backend_address(self, node, container):
        return Stack.backend_address(self.state, node.docker(), container)

    def door_tasks(self):
        """The task addresses the front door's upstream lists now (front_tasks.sh's file)."""
        [(node, front)] = self.containers("front")
        return sorted(entry.rsplit(":", 1)[0] for entry in Stack.door_upstream(node.docker(), front))

    def task_addresses(self):
        return sorted(self.backend_address(node, cid) for node, cid in self.containers("mms"))

    def door_follows_the_tasks(self, timeout=60):
        """The door's upstream becomes the running tasks' addresses (it asks DNS every second)."""

        def same():
            tasks = self.task_addresses()
            return len(tasks) == self.replicas and self.door_tasks() == tasks

        wait_until(same, timeout, "the front door's upstream to list the running tasks", not_yet=(LifecycleError,))

    def connections_from_the_door(self):
        """{(task address, the door's port)} of the TCP connections to MMS
        (MMS_PORT) that the front door holds open on each task: read from
        /proc/net/tcp inside the task containers (state 01 = ESTABLISHED)."""
        [(front_node, front)] = self.containers("front")
        door = self.backend_address(front_node, front)
        held = set()
        for node, cid in self.containers("mms"):
            table = node.docker().run("exec", cid, "cat", "/proc/net/tcp")
            for line in table.splitlines()[1:]:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if state == "01" and hex_address(local)[1] == MMS_PORT and hex_address(remote)[0] == door:
                    held.add((hex_address(local)[0], hex_address(remote)[1]))
        return held


def hex_address(field):
    """/proc/net/tcp's "0100007F:1F90" as ("127.0.0.1", 8080)."""
    address, port = field.split(":")
    return ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16)


@pytest.fixture(scope="session")
def cluster_dir():
    with tempfile.TemporaryDirectory(prefix="fbzm-") as folder:
        yield Path(folder)


def stop_stale_clusters():
    """Clusters of earlier runs of this tier (or the bench) that were killed
    before their teardown: their state file names an owner that is gone."""
    for state_file in Path(tempfile.gettempdir()).glob("fbzm-*/cluster/" + STATE_FILE):
        try:
            owner = json.loads(state_file.read_text()).get("owner_pid")
        except (OSError, ValueError):
            continue
        if owner and live_process(owner) is None:
            log.info("stopping the cluster a killed run left in %s", state_file.parent)
            Cluster(state_file.parent).stop()


@pytest.fixture(scope="session")
def running_cluster(cluster_dir, mar_path):
    stop_stale_clusters()
    cluster = Cluster(cluster_dir / "cluster")
    options = ClusterOptions(nodes=3, managers=3, stack=f"fbzm{free_port() % 1000}", mar=str(mar_path))
    state = None
    try:
        cluster.start(options)
        state = cluster.require()
        log.info("the cluster:\n%s", cluster.status())
        yield RunningCluster(cluster)
    finally:
        state = state or cluster.load()
        cluster.stop()
        if state is not None:
            left = leftovers(state)
            assert not left, f"stop left {left}"
