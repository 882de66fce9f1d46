"""The containers' control plane: engine, swarm, images, stack; one state file.

The state file is written before anything is made and updated after every
step, so `stop` finds and removes everything this code made (the stack, the
images it built, the swarm it created, its own dockerd and the iptables rules,
chains, bridges and switches it changed, recorded step by step), also after a
crash half-way. MMS tasks are on an internal, encrypted overlay only (stack.yml;
unencrypted, with a warning, where the kernel has no ESP); Swarm listens on
FIZBUZ_SWARM_ADDRESS (loopback) only."""

import dataclasses
import hashlib
import logging
import os
import secrets
import time
from pathlib import Path

from fizbuz import settings
from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE
from fizbuz.lifecycle import JsonState, LifecycleError, check_port_free, wait_until
from fizbuz.private_files import write_private
from serving.containers import images
from serving.containers.daemon import (
    DEFAULT_SOCKET,
    Docker,
    Dockerd,
    HostSnapshot,
    changes,
    merge,
    overlay_encryption,
    undo,
)
from serving.front import client, config, tokens
from serving.mms.config import tls_files

HERE = Path(__file__).resolve().parent
STACK_FILE = HERE / "stack.yml"
# Where the front image keeps nginx's own files (made by Dockerfile.front) and
# gets the rest (stack.yml's configs and secrets).
FRONT_PREFIX = "/tmp/nginx"
FRONT_TASKS_FILE = f"{FRONT_PREFIX}/{config.TASKS_FILE}"  # front_tasks.sh's default
FRONT_FILES = dict(
    tokens_map="/run/secrets/fizbuz_tokens_map",
    certificate="/run/secrets/fizbuz_front_cert",
    key="/run/secrets/fizbuz_front_key",
    error_log="stderr",
    door_js=images.FRONT_DOOR_JS,
)
MMS_PORT = settings.default("inference_port")  # Dockerfile.mms's FIZBUZ_INFERENCE_PORT
STATE_FILE = "state.json"
SWARM_PORT = 2377
ENCRYPTED_LINE = 'driver_opts: {encrypted: ""}'


def stack_file(folder, state):
    """The stack file to deploy: stack.yml, whose backend overlay is encrypted;
    where this kernel cannot encrypt (daemon.overlay_encryption) a copy in
    `folder` without that line, with a warning, recorded in the state."""
    if "backend_encrypted" not in state:
        works, why = overlay_encryption()
        state["backend_encrypted"], state["backend_encryption_note"] = works, why
        if not works:
            log.warning(
                "the backend overlay is NOT encrypted: %s. MMS stays on the internal network only; "
                "between machines its traffic would cross in clear",
                why,
            )
    if state["backend_encrypted"]:
        return STACK_FILE
    lines = STACK_FILE.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != ENCRYPTED_LINE]
    if len(kept) != len(lines) - 1:
        raise LifecycleError(f"{STACK_FILE} lost its line {ENCRYPTED_LINE!r}")
    copy = Path(folder) / "stack-unencrypted.yml"
    copy.write_text("".join(kept))
    return copy


LOCAL_BASE = "local"  # build the base with debootstrap (Docker Hub not needed)
log = logging.getLogger(__name__)


@dataclasses.dataclass
class Options:
    replicas: int = 2
    mms_workers: int = 1
    front_port: int = 8443
    base: str = LOCAL_BASE
    stack: str = "fizbuz"
    mar: str = str(MODEL_STORE / MAR_FILE_NAME)
    mms_cpus: str = "1"
    mms_memory: str = "768M"
    placement: str = "node.platform.os==linux"
    front_placement: str = "node.role==manager"
    rate: int = 50000
    burst: int = 10000
    body_cap: str = "4k"
    read_timeout: float = 3
    engine: str = "auto"  # "own": always our own dockerd (tests), never one that runs already
    # The multi-node cluster (cluster.py): the registry our own dockerd pushes
    # to over plain HTTP, and the address the front door's certificate names.
    registry: str = ""
    front_address: str = "127.0.0.1"
    health_interval: str = "3s"  # the MMS health check's (stack.yml; Dockerfile.mms's by default)
    health_timeout: str = "5s"
    health_retries: int = 3
    response_timeout: str = "30"  # MMS's default_response_timeout (serving/mms/config.properties)
    # Connections from the front door to the tasks kept alive (front_tasks.sh
    # keeps an upstream group equal to the tasks); False: the name looked up per
    # request, no connection kept (what the stack did before; for comparisons).
    front_keepalive: bool = True
    # Requests in flight per task entry at the front door (front_tasks.sh's
    # max_conns; 0: no admission control), as the fleet's door.
    admission: int = settings.default("admission")


def tasks_name(options):
    """Swarm's DNS name for the healthy MMS tasks, with their port."""
    return f"tasks.{options.stack}_mms:{MMS_PORT}"


def front_settings(options):
    """The fleet's front door in DNS mode: the MMS tasks are Swarm's
    tasks.<stack>_mms. Batched routing only: the tasks register no batch-1 model."""
    return config.FrontSettings(
        listen="8443",
        hosts=[],
        dns_hosts=tasks_name(options),
        dns_keepalive=options.front_keepalive,
        workers="2",
        rate=options.rate,
        burst=options.burst,
        body_cap=options.body_cap,
        read_timeout=options.read_timeout,
        metrics_log=False,
        routing="batched",
        **FRONT_FILES,
    )


def front_address(state):
    """Where clients reach the front door: this machine, or the edge node of a
    multi-node cluster (older state files name no address)."""
    return state["options"].get("front_address", "127.0.0.1")


UPDATE_ENDS = ("completed", "rollback_completed", "paused", "rollback_paused")


def rolling_update(docker, service, changes, timeout):
    """`docker service update` of `service` with `changes` (flags), followed
    to its end through `docker` (a Docker of a manager); returns Swarm's final
    update state (one of UPDATE_ENDS)."""

    def update_status():
        return docker.json("service", "inspect", "--format", "{{json .UpdateStatus}}", service) or {}

    before = update_status().get("StartedAt")  # the last update's (still "completed") until this one starts
    docker.run("service", "update", "--detach", *changes, service, timeout=60)

    def finished():
        status = update_status()
        if status.get("StartedAt") == before:
            return None
        return status.get("State") if status.get("State") in UPDATE_ENDS else None

    return wait_until(finished, timeout, f"the rolling update of {service}", interval=1)


class Stack(JsonState):
    what = "container stack"
    error = LifecycleError

    def __init__(self, directory):
        self.dir = Path(directory).resolve()
        self.state_file = self.dir / STATE_FILE
        self.front_dir = self.dir / "front"
        self.token_file = self.front_dir / "tokens.txt"
        self.logs = self.dir / "logs"

    def docker(self, state):
        return Docker(state["socket"])

    def dockerd(self, state):
        registry = state["options"].get("registry")
        return Dockerd(
            self.dir / "dockerd", state["exec_root"], extra_args=("--insecure-registry", registry) if registry else ()
        )

    # ------------------------------------------------------------ start
    def start(self, options):
        if self.load() is None:
            # Swarm publishes the port on every address of the node (mode host).
            check_port_free(options.front_port, "the front door", "0.0.0.0", " (FRONT_PORT)")
        state, docker, mms_image, front_image = self.prepare(options)
        self._swarm(state, docker)
        self.deploy(state, docker, mms_image, front_image)
        return state

    def prepare(self, options):
        """Everything but the Swarm and the deployment: the engine, the base, the
        two images, the front door's files. Returns (state, docker, mms image,
        front image); the multi-node cluster (cluster.py) builds with it."""
        state = self.load()
        if state is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            state = {
                "id": secrets.token_hex(3),
                "options": dataclasses.asdict(options),
                "images": [],
                "own_dockerd": False,
                "swarm_created": False,
                "deployed": False,
                "timings": {},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            state["exec_root"] = f"/run/fizbuz-docker-{state['id']}"
            self.save(state)  # first: from here on, stop can find everything
        else:
            log.info("stack state found in %s: finishing or checking what it describes", self.dir)
            options = Options(**state["options"])
        docker = self._engine(state)
        base = self._base(state, docker, options)
        mms_image = self.build_mms(state, docker, base, options.mar)
        front_image = self._build(
            state, docker, "fizbuz-front", images.front_context(self.dir / "build" / "front"), base
        )
        self._front_files(state, options)
        return state, docker, mms_image, front_image

    def _engine(self, state):
        """A dockerd that already runs (DOCKER_HOST or the default socket), or our own."""
        if state.get("socket") and Docker(state["socket"]).answers():
            return Docker(state["socket"])
        given = os.environ.get("DOCKER_HOST", "")
        candidates = [given[len("unix://") :]] if given.startswith("unix://") else []
        candidates.append(DEFAULT_SOCKET)
        if state["options"].get("engine") == "own":
            candidates = []
        for socket in candidates:
            if Path(socket).exists() and Docker(socket).answers():
                log.info("using the Docker engine that already runs on %s (it stays running after stop)", socket)
                state.update(socket=socket, own_dockerd=False)
                self.save(state)
                return Docker(socket)
        if "snapshot" not in state:
            state["snapshot"] = dataclasses.asdict(HostSnapshot.take())
        state.update(own_dockerd=True, socket=str(self.dir / "dockerd" / "docker.sock"))
        self.save(state)
        state["storage_driver"] = self.dockerd(state).start()
        self.save(state)
        self.record_changes(state, HostSnapshot(**state["snapshot"]))
        log.info("our dockerd runs (storage driver %s, socket %s)", state["storage_driver"], state["socket"])
        return Docker(state["socket"])

    def _swarm(self, state, docker):
        node = docker.run("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}").split()
        if node[0] == "active":
            if node[1] != "true":
                raise LifecycleError("this engine is a Swarm worker: run start on a manager")
            return
        log.info("creating a one-node Swarm (docker swarm init)")
        state["swarm_created"] = True
        self.save(state)
        before = HostSnapshot.take()
        address = settings.value("swarm_address")
        # Listen (2377) and advertise on that address only: not every address of the machine.
        docker.run("swarm", "init", "--listen-addr", f"{address}:{SWARM_PORT}", "--advertise-addr", address)
        self.record_changes(state, before)

    def record_changes(self, state, before):
        """What our dockerd changed in the kernel since `before` (taken right
        before a step of ours), added to the state file: stop undoes exactly
        that. Nothing is recorded for an engine that was already running."""
        if not state.get("own_dockerd"):
            return
        state["changed"] = merge(state.get("changed"), changes(before, HostSnapshot.take()))
        self.save(state)

    def _base(self, state, docker, options):
        if options.base != LOCAL_BASE:
            return options.base
        tag = f"fizbuz-base:bookworm-{state['id']}"
        if not docker.run("images", "-q", tag).strip():
            self._remember_image(state, tag)
            started = time.monotonic()
            images.build_base(docker, tag, self.dir / "build")
            state["timings"]["base_s"] = round(time.monotonic() - started, 1)
            self.save(state)
        return tag

    def _remember_image(self, state, tag):
        if tag not in state["images"]:
            state["images"].append(tag)
            self.save(state)

    def _build(self, state, docker, name, context, base, version=None):
        """docker build with a tag from the context's content: the same
        inputs give the same tag (and a cached build)."""
        digest = hashlib.sha256()
        for path in sorted(p for p in Path(context).rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(context)).encode())
            digest.update(path.read_bytes())
        digest.update(base.encode())
        tag = f"{name}:{version or digest.hexdigest()[:12]}"
        self._remember_image(state, tag)
        self.logs.mkdir(parents=True, exist_ok=True)
        build_log = self.logs / f"build-{name}.log"
        log.info("building %s (log %s)", tag, build_log)
        started = time.monotonic()
        docker.run(
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE={base}",
            "--build-arg",
            f"VERSION={tag.split(':')[1]}",
            "-t",
            tag,
            context,
            timeout=1800,
            output=build_log,
        )
        seconds = round(time.monotonic() - started, 1)
        state["timings"][f"build_{name}_s"] = seconds
        self.save(state)
        log.info("built %s in %.0f s", tag, seconds)
        return tag

    def build_mms(self, state, docker, base, mar, version=None):
        context = images.mms_context(self.dir / "build" / "mms", mar, wheel_cache=self.dir / "build" / "wheels")
        return self._build(state, docker, "fizbuz-mms", context, base, version)

    def _front_files(self, state, options):
        self.front_dir.mkdir(parents=True, exist_ok=True)
        if not self.token_file.exists():
            tokens.add(self.token_file, "default")
            log.info("made a token named 'default' in %s", self.token_file)
        write_private(self.front_dir / "tokens.map", tokens.render_map(tokens.read(self.token_file)))
        tls_files(self.front_dir, None, None, options.front_address)  # cert.pem, key.pem, made once
        (self.front_dir / "nginx.conf").write_text(config.render(front_settings(options), FRONT_PREFIX))

    # ------------------------------------------------------------ deploy / update
    def _stack_env(self, state, mms_image, front_image):
        options = Options(**state["options"])
        digest = hashlib.sha256()
        for name in ("nginx.conf", "tokens.map", "cert.pem", "key.pem"):
            digest.update((self.front_dir / name).read_bytes())
        return dict(
            MMS_IMAGE=mms_image,
            FRONT_IMAGE=front_image,
            REPLICAS=str(options.replicas),
            MMS_WORKERS=str(options.mms_workers),
            MMS_CPUS=options.mms_cpus,
            MMS_MEMORY=options.mms_memory,
            MMS_PLACEMENT=options.placement,
            FRONT_PLACEMENT=options.front_placement,
            FRONT_PORT=str(options.front_port),
            FRONT_DIR=str(self.front_dir),
            FRONT_TASKS=tasks_name(options),
            FRONT_ADMISSION=str(options.admission),
            MMS_HEALTH_TIMEOUT=options.health_timeout,
            MMS_HEALTH_INTERVAL=options.health_interval,
            MMS_RESPONSE_TIMEOUT=options.response_timeout,
            MMS_HEALTH_RETRIES=str(options.health_retries),
            CONFIG_PREFIX=f"{options.stack}_{digest.hexdigest()[:10]}",
        )

    def deploy(self, state, docker, mms_image, front_image, timeout=300):
        options = Options(**state["options"])
        env = self._stack_env(state, mms_image, front_image)
        state.update(deployed=True, mms_image=mms_image, front_image=front_image)
        self.save(state)
        log.info(
            "deploying stack %s: %d x %s behind %s on port %d",
            options.stack,
            options.replicas,
            mms_image,
            front_image,
            options.front_port,
        )
        started = time.monotonic()
        deploy_env = dict(docker.env, **env)
        saved, docker.env = docker.env, deploy_env
        before = HostSnapshot.take()
        try:
            docker.run("stack", "deploy", "--prune", "-c", stack_file(self.dir, state), options.stack)
        finally:
            docker.env = saved
            self.save(state)
        self.wait_converged(state, docker, timeout)
        self.record_changes(state, before)
        state["timings"]["deploy_to_first_answer_s"] = round(time.monotonic() - started, 1)
        self.save(state)
        log.info(
            "stack %s serves on https://%s:%d (%.0f s after deploy)",
            options.stack,
            options.front_address,
            options.front_port,
            state["timings"]["deploy_to_first_answer_s"],
        )

    def wait_converged(self, state, docker, timeout):
        options = Options(**state["options"])

        def healthy():
            self._fail_on_crash_loop(state, docker)
            return len(self.healthy_tasks(state, docker)) >= options.replicas

        wait_until(healthy, timeout, f"{options.replicas} healthy MMS tasks", interval=1)
        wait_until(lambda: self.ready(state)[0] == 200, timeout, "the front door's /ready to say 200", interval=0.5)

    def update(self, mar, version=None, timeout=600):
        """A model update is a new MMS image (the given archive inside), rolled
        out by Swarm: start-first, health-gated, rolled back when a new task
        fails. Returns Swarm's final update state."""
        state = self.require()
        docker = self.docker(state)
        base = self._base(state, docker, Options(**state["options"]))
        image = self.build_mms(state, docker, base, mar, version)
        if image == state.get("mms_image"):
            log.info("%s already runs: nothing to update", image)
            return "completed"
        service = f"{state['options']['stack']}_mms"
        log.info("rolling %s out to %s (one task at a time, start-first)", image, service)
        previous = state["mms_image"]

        result = rolling_update(docker, service, ("--image", image), timeout)
        if result == "completed":
            state["mms_image"] = image
        else:
            log.warning("the update to %s ended in %s; %s still serves", image, result, previous)
        self.save(state)
        self.wait_converged(state, docker, timeout)
        return result

    def _fail_on_crash_loop(self, state, docker, limit=4):
        """Stop waiting when MMS tasks keep failing (a broken image): say why."""
        service = f"{state['options']['stack']}_mms"
        failed = docker.run(
            "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={service}", "--filter", "status=exited"
        ).split()
        if len(failed) >= limit + state["options"]["replicas"]:
            logs = docker.run("logs", "--tail", "25", failed[0], check=False) or ""
            raise LifecycleError(f"{len(failed)} MMS tasks exited; the last one's output ends with:\n{logs}")

    # ------------------------------------------------------------ reports
    def healthy_tasks(self, state, docker):
        """Ids of running MMS task containers whose health check passes."""
        service = f"{state['options']['stack']}_mms"
        found = docker.run(
            "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}", "--filter", "health=healthy"
        )
        return found.split()

    def task_containers(self, state, docker, service="mms"):
        name = f"{state['options']['stack']}_{service}"
        return docker.run("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}").split()

    @staticmethod
    def backend_address(state, docker, container):
        """A task container's address on the stack's backend overlay."""
        network = f"{state['options']['stack']}_backend"
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        return docker.run("inspect", "--format", template, container).strip()

    @staticmethod
    def door_upstream(docker, front_container):
        """The "address:port" entries the front door's upstream lists now
        (front_tasks.sh's file in the front container), sorted; [] when no task."""
        text = docker.run("exec", front_container, "cat", FRONT_TASKS_FILE)
        lines = [line for line in text.splitlines() if line.startswith("server ") and " down;" not in line]
        return sorted({line.split()[1] for line in lines})

    def ready(self, state=None):
        state = state or self.require()
        status, _, text = client.request(
            front_address(state),
            state["options"]["front_port"],
            "GET",
            "/ready",
            self.front_dir / "cert.pem",
            timeout=10,
        )
        return status, text

    def env_lines(self):
        state = self.require()
        names = tokens.read(self.token_file)
        token = names.get("default") or next(iter(names.values()), "")
        address = f"{front_address(state)}:{state['options']['front_port']}"
        return [
            f"export FIZBUZ_URL=https://{address}",
            # gRPC clients (tritonclient.grpc) take host:port: the same door, HTTP/2
            f"export FIZBUZ_GRPC_URL={address}",
            f"export FIZBUZ_TOKEN={token}",
            f"export FIZBUZ_CACERT={self.front_dir / 'cert.pem'}",
        ]

    def status(self):
        state = self.require()
        docker = self.docker(state)
        engine = (
            "our own dockerd, storage driver " + state.get("storage_driver", "?")
            if state["own_dockerd"]
            else "an engine that was already running"
        )
        lines = [
            f"container stack {state['options']['stack']} (state {self.state_file})",
            f"  engine: {engine} on {state['socket']}{'  [not answering]' if not docker.answers() else ''}",
        ]
        if docker.answers():
            lines.append(
                docker.run(
                    "service",
                    "ls",
                    "--filter",
                    f"label=com.docker.stack.namespace={state['options']['stack']}",
                    check=False,
                )
                or ""
            )
            lines.append(
                docker.run(
                    "stack",
                    "ps",
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.Name}}  {{.Image}}  {{.CurrentState}}",
                    state["options"]["stack"],
                    check=False,
                )
                or ""
            )
            ready, _ = self.ready(state)
            address = f"{front_address(state)}:{state['options']['front_port']}"
            lines.append(f"  front door https://{address}  /ready {ready}")
            for front in self.task_containers(state, docker, "front"):
                try:
                    upstream = " ".join(self.door_upstream(docker, front)) or "none"
                except LifecycleError as error:  # the container went away meanwhile
                    upstream = f"unknown ({error})"
                lines.append(f"  front door's upstream (the tasks it keeps connections to): {upstream}")
        return "\n".join(line.rstrip() for line in lines)

    # ------------------------------------------------------------ stop
    def stop(self, timeout=120):
        """Every step runs even when an earlier one failed; the state file stays
        (for another try) only if something could not be removed."""
        state = self.load()
        if state is None:
            log.info("no container stack in %s", self.dir)
            return False
        docker = self.docker(state) if state.get("socket") else None
        up = docker is not None and docker.answers()
        steps = []
        if up and state.get("deployed"):
            steps.append(("the stack", lambda: self._remove_stack(state, docker, timeout)))
        if up and state["images"]:
            steps.append(("the images", lambda: self._remove_images(state, docker)))
        if up and state.get("swarm_created"):
            steps.append(("the swarm", lambda: docker.run("swarm", "leave", "--force", timeout=60)))
        if state.get("own_dockerd"):
            steps.append(("our dockerd", lambda: self.dockerd(state).stop()))
            if "changed" in state:
                steps.append(
                    (
                        "the bridges, iptables rules and chains and switches it changed",
                        lambda: undo(state["changed"], HostSnapshot(**state["snapshot"])),
                    )
                )
            elif "snapshot" in state:  # a state file from before changes were recorded
                steps.append(("bridges and iptables chains", lambda: HostSnapshot(**state["snapshot"]).restore()))
        failed = []
        for what, step in steps:
            try:
                step()
                log.info("removed %s", what)
            except Exception as error:  # keep going: the other parts must still be removed
                log.error("removing %s failed: %s", what, error)
                failed.append(what)
        if failed:
            raise LifecycleError(
                f"could not remove {', '.join(failed)}; run stop again (state kept in {self.state_file})"
            )
        self.state_file.unlink()
        log.info("container stack stopped: nothing it made is left")
        return True

    def _remove_stack(self, state, docker, timeout):
        stack = state["options"]["stack"]
        docker.run("stack", "rm", stack, check=False)
        wait_until(
            lambda: not docker.run("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}"),
            timeout,
            f"the containers of stack {stack} to go",
            interval=0.5,
        )
        wait_until(
            lambda: not docker.run("network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}"),
            timeout,
            f"the networks of stack {stack} to go",
            interval=0.5,
        )

    def _remove_images(self, state, docker):
        present = [tag for tag in state["images"] if docker.run("images", "-q", tag).strip()]
        if present:
            docker.run("rmi", "-f", *present)
        # The multi-stage build's intermediate stage (labelled in Dockerfile.mms), nothing else.
        docker.run("image", "prune", "-f", "--filter", "label=fizbuz.stage=build", check=False)
        state["images"] = []
        self.save(state)
