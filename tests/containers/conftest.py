"""One container stack for the whole `containers` tier: our own dockerd (its own
data-root, exec-root and socket in a temp folder), a one-node Swarm, a Debian
base made with debootstrap, one build of each image, one stack on a free port.
Everything is removed at the end by the stack's own `stop` (by the state file:
stack, images, swarm, dockerd by PID, bridges, iptables chains), also after a
failed test.

The tier is opt-in: these tests run only when the -m expression names
`containers` (./run_tests.sh runs them as its second stage)."""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from fizbuz import archive
from fizbuz.contract import request_body
from fizbuz.lifecycle import LifecycleError, free_port, wait_until
from serving.front import client, tokens
from serving.containers.stack import MMS_PORT, Options, Stack

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    if "containers" in (config.getoption("markexpr") or ""):
        # A test that stops the session's stack (test_stop_*) runs after every other.
        items.sort(key=lambda item: item.name.startswith("test_stop_"))
        return
    mine = [item for item in items if HERE in Path(str(item.fspath)).parents]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]


def kernel_state():
    """The iptables rules and chain policies of the filter and nat tables (no
    counters) and ip_forward. Lines naming other parts of this project that
    other test runs on this machine add and remove at any moment (a fleet's
    FORWARD rule for its bridge fbz<id>, an MMS's owner-only rule, commented
    "fizbuz: ...") are left out."""
    state = {"ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()}
    for table in ("filter", "nat"):
        lines = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, timeout=30).stdout
        state[table] = sorted(
            " ".join(line.split()[:2]) if line.startswith(":") else line
            for line in lines.splitlines()
            if line.startswith((":", "-A ")) and "fbz" not in line and "fizbuz" not in line
        )
    return state


@pytest.fixture(scope="session")
def make_archive():
    return archive.variant


class RunningStack:
    """The stack plus what a test needs to talk to it."""

    kernel_state = staticmethod(kernel_state)

    def __init__(self, stack):
        self.stack = stack
        self.state = stack.require()
        self.docker = stack.docker(self.state)
        self.port = self.state["options"]["front_port"]
        self.cafile = stack.front_dir / "cert.pem"
        self.token = tokens.read(stack.token_file)["default"]

    def refresh(self):
        self.state = self.stack.require()
        return self

    def predict(self, number, token="default"):
        token = self.token if token == "default" else token
        return client.request(
            "127.0.0.1",
            self.port,
            "POST",
            client.PREDICT_PATH,
            self.cafile,
            token,
            request_body(number),
            {"Content-Type": "application/json"},
        )

    def load(self, concurrency=32, **kwargs):
        return client.Load("127.0.0.1", self.port, self.cafile, self.token, concurrency, **kwargs)

    def mms_containers(self):
        return self.stack.task_containers(self.refresh().state, self.docker)

    def healthy(self):
        return self.stack.healthy_tasks(self.state, self.docker)

    def door_follows_the_tasks(self, timeout=60):
        """The front door's upstream becomes the healthy tasks' backend
        addresses (front_tasks.sh asks Swarm's DNS every second)."""

        def same():
            tasks = sorted(
                f"{self.stack.backend_address(self.state, self.docker, c)}:{MMS_PORT}" for c in self.healthy()
            )
            [front] = self.stack.task_containers(self.state, self.docker, "front")
            return (
                len(tasks) == self.state["options"]["replicas"]
                and self.stack.door_upstream(self.docker, front) == tasks
            )

        wait_until(
            same, timeout, "the front door's upstream to list the healthy tasks", not_yet=(LifecycleError, ValueError)
        )

    def describe_model(self, container):
        """The model as the task's own management API (on its loopback) describes it."""
        text = self.docker.run(
            "exec",
            container,
            "python3",
            "-c",
            "import json; from serving.mms import management; print(json.dumps(management.describe_model(8081)))",
        )
        return json.loads(text)

    def task_report(self):
        """Swarm's view of the MMS tasks and each task container's last health
        checks: logged when a wait for the tasks times out."""
        service = f"{self.state['options']['stack']}_mms"
        lines = [
            self.docker.run(
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{.Name}} {{.CurrentState}} {{.Error}}",
                service,
                check=False,
            )
            or ""
        ]
        for container in self.docker.run(
            "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={service}"
        ).split():
            health = (
                self.docker.run(
                    "inspect", "--format", "{{.State.Status}} {{json .State.Health}}", container, check=False
                )
                or ""
            )
            lines.append(f"{container}: {health.strip()[-1500:]}")
        return "\n".join(lines)

    def image_of(self, container):
        return self.docker.run("inspect", "--format", "{{.Config.Image}}", container).strip()


@pytest.fixture(scope="session")
def stack_dir():
    with tempfile.TemporaryDirectory(prefix="fbzc-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def running_stack(stack_dir, mar_path):
    stack = Stack(stack_dir / "stack")
    options = Options(stack=f"fbzt{free_port() % 1000}", front_port=free_port(), engine="own", mar=str(mar_path))
    before = kernel_state()  # what stop must give back (test_container_hardening.py)
    try:
        stack.start(options)
        running = RunningStack(stack)
        running.before = before
        yield running
    finally:
        stack.stop()
