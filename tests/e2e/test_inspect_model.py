"""inspect_model.sh serves the ONNX graph in netron; headless Chromium sees it drawn.

Every netron here listens on a free port (never 8080/8081) and keeps its pid file
and log in the test's temp folder; teardown stops it with the script and then by
PID if it is still there. Browsers (Playwright on the system Chromium) get a temp
profile and are stopped by headless_page on leaving.
"""

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import onnx
import onnx.helper
import psutil
import pytest
import requests

from fizbuz.contract import INPUT_KEY, ONNX_PATH, ROOT
from fizbuz.lifecycle import free_port, wait_until
from inspection.headless_chromium import headless_page, processes_using
from inspection.render_netron import RenderError, render

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "inspection" / "inspect_model.sh"
COMMITTED_MODEL = ONNX_PATH


def port_is_open(port):
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def gone(pid, timeout=15):
    """True once pid has exited (reaped or a zombie), waiting at most timeout."""
    try:
        process = psutil.Process(pid)
        process.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return process.status() == psutil.STATUS_ZOMBIE
    return True


class Netron:
    """inspect_model.sh with its own port, run folder and model copy."""

    def __init__(self, tmp_path, model=COMMITTED_MODEL):
        self.run_dir = tmp_path / "run"
        self.model = tmp_path / "model" / model.name
        self.model.parent.mkdir(parents=True)
        shutil.copy(model, self.model)
        self.port = free_port()
        self.env = dict(
            os.environ,
            FIZBUZ_RUN_DIR=str(self.run_dir),
            NETRON_PORT=str(self.port),
            NETRON_BROWSE="0",
            NETRON_TIMEOUT="60",
        )

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid_file(self):
        return self.run_dir / "netron.pid"

    def pid(self):
        return int(self.pid_file.read_text())

    def foreground(self, preexec_fn=None):
        """The script in serve mode, as a terminal runs it: a process group of its own."""
        return subprocess.Popen(
            [str(SCRIPT), str(self.model)],
            env=self.env,
            bufsize=0,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )

    def run(self, *args, **env):
        return subprocess.run(
            [str(SCRIPT), *args],
            env=dict(self.env, **env),
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )

    def start(self, **env):
        result = self.run("start", str(self.model), **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def cleanup(self):
        pid = self.pid() if self.pid_file.exists() else None
        self.run("stop")
        if pid and psutil.pid_exists(pid) and "netron" in " ".join(psutil.Process(pid).cmdline()):
            psutil.Process(pid).kill()  # the script failed to stop it: kill by PID


@pytest.fixture
def netron(tmp_path):
    servers = []

    def make(model=COMMITTED_MODEL):
        server = Netron(tmp_path / f"netron{len(servers)}", model)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_help_lists_the_modes_and_tunables():
    result = subprocess.run([str(SCRIPT), "-h"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for word in (
        "start",
        "stop",
        "status",
        "NETRON_PORT",
        "[8090]",
        "NETRON_HOST",
        "[127.0.0.1]",
        "NETRON_TIMEOUT",
        "NETRON_BROWSE",
        "FIZBUZ_RUN_DIR",
    ):
        assert word in result.stdout, word


def test_start_serves_the_model_and_stop_ends_it_by_pid(netron):
    server = netron()
    result = server.start(NETRON_BROWSE="1", DISPLAY="", WAYLAND_DISPLAY="")
    assert f"netron is ready: {server.url}" in result.stdout
    assert "no display here" in result.stdout  # headless is not an error
    pid = server.pid()
    assert "netron" in " ".join(psutil.Process(pid).cmdline())

    page = requests.get(server.url, timeout=10)
    assert page.status_code == 200 and "<title>Netron</title>" in page.text
    served = requests.get(f"{server.url}data/{server.model.name}", timeout=10)
    assert served.content == server.model.read_bytes()

    again = server.start()  # idempotent: reports the running one
    assert "already runs" in again.stdout and server.pid() == pid
    assert server.run("status").returncode == 0

    stopped = server.run("stop")
    assert stopped.returncode == 0 and f"stopped netron (pid {pid})" in stopped.stdout
    assert gone(pid)
    assert not port_is_open(server.port)
    assert not server.pid_file.exists()
    assert server.run("status").returncode == 1
    assert "not running" in server.run("stop").stdout  # stopping twice is fine


def test_refuses_a_port_that_is_taken(netron):
    server = netron()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        result = server.run("start", str(server.model))
    assert result.returncode != 0
    assert f"port {server.port} (netron) is already in use on 127.0.0.1" in result.stderr
    assert not server.pid_file.exists()


@pytest.mark.parametrize(
    "env",
    [{"NETRON_PORT": "8080"}, {"NETRON_PORT": "8081"}, {"NETRON_PORT": "23456", "MANAGEMENT_PORT": "23456"}],
    ids=["mms-inference", "mms-management", "moved-mms-port"],
)
def test_refuses_the_mms_ports_without_touching_them(netron, env):
    server = netron()
    result = server.run("start", str(server.model), **env)
    assert result.returncode != 0
    assert "is an MMS port" in result.stderr
    assert not server.pid_file.exists()


def test_missing_model_is_a_clear_error(netron, tmp_path):
    result = netron().run("start", str(tmp_path / "nothing.onnx"))
    assert result.returncode != 0 and "no model at" in result.stderr


def ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# "ignored-by-caller" is how the suite once went red on a fresh machine: started
# as a background job of a non-interactive shell, pytest and everything it starts
# inherit SIGINT ignored, and a bash `trap ... INT` cannot catch an ignored
# signal, so the old script never saw the Ctrl-C.
@pytest.mark.parametrize("preexec_fn", [None, ignore_sigint], ids=["default", "ignored-by-caller"])
def test_foreground_mode_stops_netron_on_ctrl_c(netron, preexec_fn):
    server = netron()
    process = server.foreground(preexec_fn)
    try:
        # Printed only after netron answered with the page and the model: it is ready.
        output = read_until(process, "Ctrl-C stops it.", deadline=120)
        assert f"netron is ready: {server.url}" in output
        pid = server.pid()
        assert requests.get(server.url, timeout=10).status_code == 200
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert "netron stopped" in process.stdout.read().decode()
    assert gone(pid)
    assert not port_is_open(server.port)
    assert not server.pid_file.exists()


def test_ctrl_c_during_start_up_leaves_no_netron(netron):
    """Whenever the Ctrl-C lands, while netron starts or once it serves, nothing is left."""
    server = netron()
    process = server.foreground()
    try:
        wait_until(server.pid_file.exists, 120, "the pid file", alive=lambda: process.poll() is None)
        pid = server.pid()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) in (0, 1)  # 1: stopped before it was ready
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert gone(pid)
    assert not server.pid_file.exists()


def read_until(process, marker, deadline):
    """The process's output up to a line containing marker, bounded by deadline seconds."""
    output, end = "", time.monotonic() + deadline
    while marker not in output:
        left = end - time.monotonic()
        assert left > 0 and process.poll() is None, f"no {marker!r} in:\n{output}"
        # Unbuffered reads: a buffered readline could hide lines select() cannot see.
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            output += os.read(process.stdout.fileno(), 4096).decode()
    return output


@pytest.mark.slow
def test_headless_chromium_runs_a_page_and_is_stopped_by_pid():
    with headless_page(width=400, height=300) as session:
        pid, profile = session.pid, session.profile
        assert "chromium" in " ".join(psutil.Process(pid).cmdline())
        session.page.goto("data:text/html,<p id='p'>drawn by script</p>")
        assert session.page.evaluate("document.getElementById('p').textContent") == "drawn by script"
        assert session.page.evaluate("[innerWidth, innerHeight]") == [400, 300]
    assert gone(pid)
    assert not os.path.exists(profile)
    assert processes_using(profile) == []


@pytest.mark.slow
def test_chromium_draws_the_fizbuz_graph_in_netron(netron, tmp_path):
    server = netron()
    server.start()
    screenshot = tmp_path / "netron_graph.png"
    graph = render(server.url, screenshot=screenshot, deadline=90)

    model_ops = [node.op_type for node in onnx.load(str(server.model)).graph.node]
    assert graph["ops"] == model_ops  # every node, in order, as drawn
    assert "Gemm" in graph["ops"] and "Sigmoid" in graph["ops"]
    assert graph["ops"] == ["Gemm", "Sigmoid", "Gemm"]  # FizBuzNet's own chain, as drawn
    assert graph["inputs"] == [INPUT_KEY] and graph["outputs"] == ["output"]
    width, height = png_size(screenshot)
    assert height > width > 100  # a tall crop around a three-node chain


@pytest.mark.slow
def test_render_reads_the_page_not_the_expectation(netron, tmp_path):
    """A different model is drawn as itself, and --expect fails on what is not drawn."""
    relu = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])],
            "relu_only",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 10])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])],
        )
    )
    model = tmp_path / "relu.onnx"
    onnx.save(relu, str(model))
    server = netron(model)
    server.start()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inspection.render_netron",
            server.url,
            "--expect",
            "Relu",
            "Sigmoid",
            "--deadline",
            "90",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert '"ops": ["Relu"]' in result.stdout
    assert "not drawn: Sigmoid" in result.stderr


WAITING_PAGES = [
    (
        "<body class='alert'><div id='message-text'>Please update to the newest version.</div>",
        "refuses to work 180 days after its build date",
    ),
    ("<body class='welcome spinner'><svg id='canvas'></svg>", "drew no graph"),
]


@pytest.mark.slow
@pytest.mark.parametrize("html, reason", WAITING_PAGES, ids=["netron-message", "never-drawn"])
def test_render_fails_clearly_when_no_graph_is_drawn(html, reason):
    with pytest.raises(RenderError, match=reason):
        render(f"data:text/html,{html}", deadline=3)
