"""A multi-node Docker Swarm on one machine: N nodes, each its own Docker
engine (own data-root, exec-root, socket, hostname) in its own network
namespace, joined over addresses this code gives them on a bridge of its own;
images reach the nodes through a registry (Debian's docker-registry) on the
bridge, as they would on a LAN.

    host:  bridge fbz<id>br 198.18.X.1/24 ── registry 198.18.X.1:PORT
             │ veth fbz<id>h0       │ veth fbz<id>h1      │ veth fbz<id>h2
    netns fbz<id>n0 .10      netns fbz<id>n1 .11    netns fbz<id>n2 .12
    dockerd (manager, edge)  dockerd (model)        dockerd (model)
    front door :8443         MMS task               MMS task

The images are built by a Stack of their own (stack.py's prepare: our own
dockerd on the host, the debootstrap base) and pushed to the registry. Every
name carries the run's random id, so several clusters, and other dockerds, do
not collide. The state file is written before anything is made; `stop` kills
every process of every node (by network namespace, also after a kill -9 of any
part), unmounts, deletes namespaces, bridge, iptables rule, registry, folders.
"""

import dataclasses
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

from fizbuz.lifecycle import JsonState, LifecycleError, PidFile, free_port, spawn, wait_until
from serving.containers.daemon import Docker, unmount_under
from serving.containers.stack import Options, Stack, rolling_update, stack_file

STATE_FILE = "cluster.json"
SUBNET = "198.18.{}"  # 198.18.0.0/15 is for tests: no LAN uses it
FIRST_HOST = 10
FRONT_PORT = 8443  # inside the edge node's namespace: no host port is taken
MODEL_LABEL, EDGE_LABEL = "fizbuz.role=model", "fizbuz.role=edge"
log = logging.getLogger(__name__)


@dataclasses.dataclass
class ClusterOptions:
    nodes: int = 3
    managers: int = 1
    replicas: int = 2
    mms_workers: int = 1
    stack: str = "fizbuz"
    mar: str = Options.mar
    base: str = "local"
    mms_cpus: str = "1"
    mms_memory: str = "768M"
    admission: int = Options.admission


def run(*command, check=True):
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise LifecycleError(f"{' '.join(map(str, command))} failed: {done.stderr.strip()}")
    return done


class Node:
    """One machine of the cluster: its namespace, link, address and engine."""

    def __init__(self, cluster, spec, registry):
        self.spec = spec
        self.index, self.name, self.role = spec["index"], spec["name"], spec["role"]
        self.netns, self.veth, self.address = spec["netns"], spec["veth"], spec["address"]
        self.folder = cluster.dir / "nodes" / self.name
        self.exec_root = Path(spec["exec_root"])
        self.socket = self.folder / "docker.sock"
        self.pid_file = PidFile(self.folder / "dockerd.pid", "dockerd")
        self.log_file = self.folder / "dockerd.log"
        self.registry = registry

    def docker(self):
        return Docker(self.socket)

    def answers(self):
        return bool(self.socket.exists() and self.docker().answers())

    def listening(self):
        """The engine's socket takes a connection: a cheap check (no docker CLI
        started) for the polls that pick a manager."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(str(self.socket))
                return True
            except OSError:
                return False

    def make_namespace(self, bridge, gateway):
        if not Path(f"/run/netns/{self.netns}").exists():
            run("ip", "netns", "add", self.netns)
        if self.veth not in _links():
            run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
            run("ip", "link", "set", self.veth, "master", bridge, "up")
            run("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
            run("ip", "-n", self.netns, "link", "set", "eth0", "up")
            run("ip", "-n", self.netns, "link", "set", "lo", "up")
            run("ip", "-n", self.netns, "route", "add", "default", "via", gateway)

    def command(self):
        # nsenter --net only (not `ip netns exec`: it remounts /sys and hides
        # the cgroup mounts dockerd needs); unshare --uts: the node's own
        # hostname, which Swarm takes as the node's name.
        return [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.name,
            "dockerd",
            "--data-root",
            self.folder / "data",
            "--exec-root",
            self.exec_root,
            "--host",
            f"unix://{self.socket}",
            "--pidfile",
            self.folder / "dockerd-own.pid",
            "--storage-driver",
            "overlay2",
            "--bridge",
            "none",
            "--userland-proxy=false",
            "--insecure-registry",
            self.registry,
            "--log-level",
            "warn",
        ]

    def start_engine(self, timeout=90):
        if self.pid_file.process() is not None and self.answers():
            return
        unmount_under(self.exec_root)  # what a killed engine left mounted
        (self.folder / "dockerd-own.pid").unlink(missing_ok=True)
        process = spawn(self.command(), self.log_file, pid_file=self.pid_file)
        wait_until(
            self.answers, timeout, f"the engine of {self.name}", interval=0.3, alive=lambda: process.poll() is None
        )

    def processes(self):
        """Every process of this node: those in its network namespace (dockerd,
        containerd, shims) and those in its containers' namespaces (under the
        exec-root), found by namespace inode, so nothing depends on a parent."""
        inodes = set()
        for path in [Path(f"/run/netns/{self.netns}"), *sorted((self.exec_root / "netns").glob("*"))]:
            try:
                inodes.add(f"net:[{os.stat(path).st_ino}]")
            except OSError:
                pass
        found = []
        for process in psutil.process_iter():
            try:
                if os.readlink(f"/proc/{process.pid}/ns/net") in inodes:
                    found.append(process)
            except OSError:
                pass
        return found

    def kill(self):
        """The machine dies: SIGKILL to every process of the node, at once."""
        for _ in range(5):
            victims = self.processes()
            if not victims:
                return
            for process in victims:
                try:
                    process.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            psutil.wait_procs(victims, timeout=10)
        if self.processes():
            raise LifecycleError(f"processes of {self.name} survive SIGKILL")

    def remove(self):
        self.kill()
        self.pid_file.remove()
        for root in (self.exec_root, self.folder):
            unmount_under(root)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        if Path(f"/run/netns/{self.netns}").exists():
            run("ip", "netns", "delete", self.netns, check=False)  # its veth pair goes with it
        if self.veth in _links():
            run("ip", "link", "delete", self.veth, check=False)

    def link(self, up):
        """Cut (or mend) the node's only network link, at the host's end."""
        run("ip", "link", "set", self.veth, "up" if up else "down")


def _links():
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return {line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines()}


def _used_subnets():
    done = subprocess.run(["ip", "-o", "-4", "route", "show", "table", "all"], capture_output=True, text=True)
    return done.stdout


class Cluster(JsonState):
    what = "multi-node cluster"
    error = LifecycleError

    def __init__(self, directory):
        self.dir = Path(directory).resolve()
        self.state_file = self.dir / STATE_FILE
        self.builder = Stack(self.dir / "builder")  # builds the images on the host (own dockerd)
        self.registry_dir = self.dir / "registry"
        self.registry_pid = PidFile(self.registry_dir / "registry.pid", "docker-registry")

    # ------------------------------------------------------------ names
    @staticmethod
    def registry_address(state):
        return f"{state['gateway']}:{state['registry_port']}"

    def nodes(self, state=None):
        state = state or self.require()
        return [Node(self, spec, self.registry_address(state)) for spec in state["nodes"]]

    def node(self, name_or_index):
        nodes = self.nodes()
        return (
            nodes[name_or_index]
            if isinstance(name_or_index, int)
            else next(n for n in nodes if n.name == name_or_index)
        )

    def manager(self, state=None):
        """A manager whose engine answers (any of them: one may be lost)."""
        for node in self.nodes(state):
            if node.role == "manager" and node.listening():
                return node.docker()
        raise LifecycleError("no manager of the cluster answers")

    def edge(self, state=None):
        return self.nodes(state)[0]

    def _new_state(self, options):
        if not 2 <= options.nodes <= 9 or not 1 <= options.managers <= options.nodes:
            raise LifecycleError("--nodes must be 2..9 and --managers 1..nodes")
        used = _used_subnets()
        free = [x for x in range(256) if f"{SUBNET.format(x)}." not in used]
        if not free:
            raise LifecycleError("no free /24 in 198.18.0.0/16")
        cid = secrets.token_hex(3)
        subnet = SUBNET.format(random.choice(free))
        state = {
            "id": cid,
            "options": dataclasses.asdict(options),
            "bridge": f"fbz{cid}br",
            "gateway": f"{subnet}.1",
            "registry_port": free_port(),
            "deployed": False,
            "owner_pid": os.getpid(),
            "timings": {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "nodes": [
                dict(
                    index=i,
                    name=f"fbz{cid}-n{i}",
                    netns=f"fbz{cid}n{i}",
                    veth=f"fbz{cid}h{i}",
                    address=f"{subnet}.{FIRST_HOST + i}",
                    exec_root=f"/run/fbz{cid}n{i}",
                    role="manager" if i < options.managers else "worker",
                    label=EDGE_LABEL if i == 0 else MODEL_LABEL,
                )
                for i in range(options.nodes)
            ],
        }
        return state

    # ------------------------------------------------------------ start
    def start(self, options):
        state = self.load()
        if state is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            state = self._new_state(options)
            self.save(state)  # first: from here on, stop can find everything
        else:
            log.info("cluster state found in %s: finishing what it describes", self.dir)
            options = ClusterOptions(**state["options"])
        started = time.monotonic()
        self._bridge(state)
        self._registry(state)
        for node in self.nodes(state):
            node.make_namespace(state["bridge"], state["gateway"])
            node.start_engine()
        self._swarm(state)
        state["timings"]["nodes_s"] = round(time.monotonic() - started, 1)
        self.save(state)
        mms_image, front_image = self._images(state, options)
        self.deploy(state, mms_image, front_image)
        return state

    def _bridge(self, state):
        bridge = state["bridge"]
        if bridge not in _links():
            run("ip", "link", "add", bridge, "type", "bridge")
            run("ip", "addr", "add", f"{state['gateway']}/24", "dev", bridge)
            run("ip", "link", "set", bridge, "up")
        if "forward_rule" not in state:
            # br_netfilter sends bridged frames through FORWARD, whose policy a
            # dockerd sets to DROP: let the nodes talk to each other.
            state["filter_table_was_empty"] = not any(
                line.startswith(":") for line in run("iptables-save", "-t", "filter", check=False).stdout.splitlines()
            )
            state["forward_rule"] = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
            self.save(state)
            run("iptables", "-I", *state["forward_rule"][:1], "1", *state["forward_rule"][1:])

    def _registry(self, state):
        if self.registry_pid.process() is not None:
            return
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        config = self.registry_dir / "config.yml"
        config.write_text(
            "\n".join(
                [
                    "version: 0.1",
                    "log: {level: warn}",
                    f"storage: {{filesystem: {{rootdirectory: {self.registry_dir / 'data'}}}, "
                    "delete: {enabled: true}}",
                    f'http: {{addr: "{self.registry_address(state)}"}}',
                    "",
                ]
            )
        )
        if shutil.which("docker-registry") is None:
            raise LifecycleError("docker-registry is missing (serving/containers/setup_docker.sh installs it)")
        process = spawn(
            ["docker-registry", "serve", config], self.registry_dir / "registry.log", pid_file=self.registry_pid
        )

        def answers():
            try:
                with urllib.request.urlopen(f"http://{self.registry_address(state)}/v2/", timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False

        wait_until(answers, 30, "the registry", interval=0.2, alive=lambda: process.poll() is None)
        log.info("registry serves on %s", self.registry_address(state))

    def _swarm(self, state):
        nodes = self.nodes(state)
        first = nodes[0].docker()
        if first.run("info", "--format", "{{.Swarm.LocalNodeState}}").strip() != "active":
            log.info("docker swarm init on %s (%s)", nodes[0].name, nodes[0].address)
            first.run("swarm", "init", "--advertise-addr", nodes[0].address)
        tokens = {role: first.run("swarm", "join-token", "-q", role).strip() for role in ("manager", "worker")}
        for node in nodes[1:]:
            docker = node.docker()
            if docker.run("info", "--format", "{{.Swarm.LocalNodeState}}").strip() != "active":
                log.info("%s joins as a %s", node.name, node.role)
                docker.run(
                    "swarm",
                    "join",
                    "--advertise-addr",
                    node.address,
                    "--token",
                    tokens[node.role],
                    f"{nodes[0].address}:2377",
                    timeout=120,
                )
        wait_until(lambda: self._ready_nodes(first) >= len(nodes), 120, "every node Ready", interval=0.5)
        for node in nodes:
            spec = next(s for s in state["nodes"] if s["name"] == node.name)
            first.run("node", "update", "--label-add", spec["label"], node.name)

    @staticmethod
    def _ready_nodes(docker):
        return sum(1 for line in docker.run("node", "ls", "--format", "{{.Status}}").split() if line == "Ready")

    def _images(self, state, options):
        """Build on the host (the builder stack's own dockerd), push to the registry."""
        registry = self.registry_address(state)
        build_options = Options(
            replicas=options.replicas,
            mms_workers=options.mms_workers,
            front_port=FRONT_PORT,
            base=options.base,
            stack=options.stack,
            mar=options.mar,
            mms_cpus=options.mms_cpus,
            mms_memory=options.mms_memory,
            admission=options.admission,
            engine="own",
            registry=registry,
            # Three engines, two tasks and the load share the cores: a check
            # can take 5 s when the machine is busy; kill only a task that
            # fails for a minute and more, and check (a Python start each
            # time) less often.
            health_interval="10s",
            health_timeout="20s",
            health_retries=5,
            # A worker's model load took over 30 s (MMS's response timeout)
            # at a load average of 30: the task exited and started again.
            response_timeout="120",
            front_address=self.edge(state).address,
            placement=f"node.labels.{MODEL_LABEL.replace('=', '==')}",
            front_placement=f"node.labels.{EDGE_LABEL.replace('=', '==')}",
        )
        started = time.monotonic()
        bstate, docker, mms_image, front_image = self.builder.prepare(build_options)
        state["timings"]["build_s"] = round(time.monotonic() - started, 1)
        return self.push(bstate, docker, mms_image), self.push(bstate, docker, front_image)

    def push(self, bstate, docker, image):
        target = f"{self.registry_address(self.require())}/{image}"
        self.builder._remember_image(bstate, target)
        docker.run("tag", image, target)
        started = time.monotonic()
        docker.run("push", target, timeout=600)
        log.info("pushed %s (%.0f s)", target, time.monotonic() - started)
        return target

    # ------------------------------------------------------------ deploy
    def deploy(self, state, mms_image, front_image, timeout=420):
        bstate = self.builder.require()
        env = self.builder._stack_env(bstate, mms_image, front_image)
        manager = self.manager(state)
        state.update(deployed=True, mms_image=mms_image, front_image=front_image)
        self.save(state)
        log.info(
            "deploying stack %s: %s x %s on the model nodes, %s on the edge node %s",
            state["options"]["stack"],
            env["REPLICAS"],
            mms_image,
            front_image,
            self.edge(state).address,
        )
        started = time.monotonic()
        saved, manager.env = manager.env, dict(manager.env, **env)
        try:
            manager.run("stack", "deploy", "--prune", "-c", stack_file(self.dir, state), state["options"]["stack"])
        finally:
            manager.env = saved
            self.save(state)  # with whether the backend overlay is encrypted (stack_file)
        self.wait_converged(timeout)
        state["timings"]["deploy_to_first_answer_s"] = round(time.monotonic() - started, 1)
        self.save(state)
        log.info(
            "the stack serves on https://%s:%d (%.0f s after deploy)",
            self.edge(state).address,
            FRONT_PORT,
            state["timings"]["deploy_to_first_answer_s"],
        )

    def tasks(self, service="mms"):
        """Swarm's tasks of a service meant to run: [(task id, task name, node name, state)]."""
        state = self.require()
        text = self.manager(state).run(
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}}\t{{.Name}}\t{{.Node}}\t{{.CurrentState}}",
            f"{state['options']['stack']}_{service}",
        )
        # check=True: a manager without a leader (an election after a node came
        # back) raises LifecycleError, which the waits take as "not yet", never 0 tasks.
        return [tuple(line.split("\t")) for line in text.splitlines() if line.count("\t") == 3]

    def running_tasks(self, service="mms"):
        """Tasks Swarm reports Running (a task with a health check is Starting
        until the check passes), by node: {node name: count}."""
        counts = {}
        for _, _, node, current in self.tasks(service):
            if current.startswith("Running"):
                counts[node] = counts.get(node, 0) + 1
        return counts

    def wait_converged(self, timeout=300):
        state = self.require()
        replicas = state["options"]["replicas"]
        wait_until(
            lambda: sum(self.running_tasks().values()) >= replicas,
            timeout,
            f"{replicas} running (healthy) MMS tasks",
            interval=1,
            not_yet=(LifecycleError,),
        )
        wait_until(
            lambda: self.builder.ready()[0] == 200,
            timeout,
            "the front door's /ready to say 200",
            interval=0.5,
            not_yet=(OSError,),
        )
        # /ready answers before the front door's own health check has passed (Starting)
        wait_until(
            lambda: sum(self.running_tasks("front").values()) >= 1,
            timeout,
            "the front door task Running",
            interval=1,
            not_yet=(LifecycleError,),
        )

    # ------------------------------------------------------------ faults and operations
    def node_states(self):
        """{node name: (status, availability, manager status)} as a manager sees them."""
        text = self.manager().run(
            "node", "ls", "--format", "{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}"
        )
        return {line.split("\t")[0]: tuple(line.split("\t")[1:]) for line in text.splitlines() if line}

    def settled(self, polls=3):
        """True when `polls` readings in a row (1 s apart) show one Leader, every
        node Ready and Active, every other manager Reachable: a node that comes
        back can start an election (its term grew while it was cut off), so one
        good reading is not enough."""
        managers = sum(1 for node in self.nodes() if node.role == "manager")
        for poll in range(polls):
            if poll:
                time.sleep(1)  # between readings of a condition that must hold, not a readiness guess
            states = self.node_states()
            roles = sorted(manager for _, _, manager in states.values() if manager)
            if roles != sorted(["Leader"] + ["Reachable"] * (managers - 1)) or any(
                (status, availability) != ("Ready", "Active") for status, availability, _ in states.values()
            ):
                return False
        return True

    def set_availability(self, node, availability):
        """`docker node update --availability drain|active`."""
        if availability not in ("drain", "active", "pause"):
            raise LifecycleError(f"no availability {availability!r}")
        self.manager().run("node", "update", "--availability", availability, node.name)

    def rolling_restart(self, *changes, timeout=600):
        """A rolling update of the MMS service across the nodes (update_config of
        stack.yml: one task at a time, start-first, health-gated); Swarm places the
        new tasks anew (spread). `changes`: `docker service update` flags (e.g.
        "--limit-cpu", "0"); none: --force, the same spec again. Returns Swarm's
        final update state."""
        service = f"{self.require()['options']['stack']}_mms"
        manager = self.manager()

        result = rolling_update(manager, service, changes or ("--force",), timeout)
        self.wait_converged(timeout)
        return result

    def spread(self, nodes, timeout=600):
        """A task on each of `nodes` again (Swarm does not move running tasks back
        after a fault, and a rolling restart can put both new tasks on one node):
        one task more, which Swarm places on the node with the fewest, then one
        less, which Swarm takes from the node with the most."""

        def spread_out():
            counts = self.running_tasks()
            return all(counts.get(node.name) for node in nodes)

        if spread_out():
            return
        state = self.require()
        service, replicas = f"{state['options']['stack']}_mms", state["options"]["replicas"]
        manager = self.manager()
        log.info("spreading %s over %s: %s", service, [node.name for node in nodes], self.running_tasks())
        manager.run("service", "update", "--detach", "--replicas", str(replicas + 1), service, timeout=60)
        wait_until(
            lambda: sum(self.running_tasks().values()) > replicas and spread_out(),
            timeout,
            "the extra task Running on the empty node",
            interval=1,
            not_yet=(LifecycleError,),
        )
        manager.run("service", "update", "--detach", "--replicas", str(replicas), service, timeout=60)
        wait_until(
            lambda: sum(self.running_tasks().values()) == replicas and spread_out(),
            timeout,
            f"{replicas} tasks, one per node",
            interval=1,
            not_yet=(LifecycleError,),
        )

    # ------------------------------------------------------------ reports
    def env_lines(self):
        return self.builder.env_lines()

    def status(self):
        state = self.require()
        lines = [
            f"multi-node cluster {state['id']} (state {self.state_file}), bridge {state['bridge']} "
            f"{state['gateway']}/24, registry {self.registry_address(state)}"
        ]
        for node in self.nodes(state):
            lines.append(
                f"  {node.name}  {node.address}  {node.role:7}  {node.spec['label']:18}  "
                f"engine {'answers' if node.answers() else 'DOWN'}"
            )
        try:
            manager = self.manager(state)
            lines.append(
                manager.run(
                    "node", "ls", "--format", "{{.Hostname}}  {{.Status}}  {{.Availability}}  {{.ManagerStatus}}"
                ).rstrip()
            )
            for service in ("mms", "front"):
                for _, name, node, current in self.tasks(service):
                    lines.append(f"  {name:22} on {node:14} {current}")
            ready, _ = self.builder.ready()
            lines.append(f"  front door https://{self.edge(state).address}:{FRONT_PORT}  /ready {ready}")
        except (LifecycleError, OSError) as error:
            lines.append(f"  swarm: {error}")
        return "\n".join(lines)

    # ------------------------------------------------------------ stop
    def stop(self):
        """Every step runs even when an earlier one failed; the state file stays
        only if something could not be removed."""
        state = self.load()
        if state is None:
            log.info("no multi-node cluster in %s", self.dir)
            return False
        steps = [(f"node {node.name}", node.remove) for node in self.nodes(state)]
        steps += [
            ("the builder (images, its dockerd)", self.builder.stop),
            ("the registry", self._remove_registry),
            ("the bridge and its iptables rule", lambda: self._remove_bridge(state)),
        ]
        failed = []
        for what, step in steps:
            try:
                step()
                log.info("removed %s", what)
            except Exception as error:  # keep going: the other parts must still be removed
                log.error("removing %s failed: %s", what, error)
                failed.append(what)
        if failed:
            raise LifecycleError(f"could not remove {', '.join(failed)}; run stop again (state in {self.state_file})")
        self.state_file.unlink()
        shutil.rmtree(self.dir / "nodes", ignore_errors=True)
        log.info("cluster stopped: nothing it made is left")
        return True

    def _remove_registry(self):
        self.registry_pid.stop(grace=5)
        shutil.rmtree(self.registry_dir, ignore_errors=True)

    def _remove_bridge(self, state):
        if state.get("forward_rule"):
            while run("iptables", "-D", *state["forward_rule"], check=False).returncode == 0:
                pass
            if (
                state.get("filter_table_was_empty")
                and shutil.which("nft")
                and not any(
                    line.startswith("-A ")
                    for line in run("iptables-save", "-t", "filter", check=False).stdout.splitlines()
                )
            ):
                run("nft", "delete", "table", "ip", "filter", check=False)
        if state["bridge"] in _links():
            run("ip", "link", "delete", state["bridge"])


def leftovers(state):
    """What of a cluster's names the kernel still holds (for tests: empty after stop)."""
    names = [state["bridge"]] + [n["veth"] for n in state["nodes"]]
    found = [name for name in names if name in _links()]
    found += [f"netns {n['netns']}" for n in state["nodes"] if Path(f"/run/netns/{n['netns']}").exists()]
    mounts = Path("/proc/mounts").read_text()
    found += [
        f"mount {line.split()[1]}"
        for line in mounts.splitlines()
        if any(n["exec_root"] in line or n["name"] in line for n in state["nodes"])
    ]
    rules = run("iptables-save", "-t", "filter", check=False).stdout
    found += [f"iptables: {line}" for line in rules.splitlines() if state["bridge"] in line]
    return found
