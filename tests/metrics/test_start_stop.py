"""The exporter's life beside its MMS: a taken port fails the start cleanly,
and a crashed server's exporter is ended by the next stop."""

import signal
import socket
import subprocess
import sys

import psutil
import pytest

from fizbuz.contract import ROOT
from fizbuz.lifecycle import wait_until
from serving.mms.metrics import control
from serving.mms.private import PrivateMms

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "serving.mms.metrics.exporter", "-h"],
        [sys.executable, "-m", "bench.metrics_picture", "-h"],
        [sys.executable, "-m", "bench.metrics_cost", "-h"],
        [str(ROOT / "serving" / "metrics" / "setup_prometheus.sh"), "-h"],
    ],
)
def test_tools_answer_help(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_a_taken_metrics_port_fails_the_start_before_anything_runs(model_store):
    server = PrivateMms(model_store=model_store)
    try:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", server.metrics_port))
            squatter.listen()
            result = server.script("start_mms.sh")
        assert result.returncode == 1
        assert f"port {server.metrics_port} (metrics exporter) is already in use" in result.stderr
        assert "METRICS_PORT" in result.stderr
        assert server.run.server() is None and control.pid_file(server.run).process() is None
    finally:
        server.stop()
        server.remove()


@pytest.mark.slow
def test_the_exporter_of_a_crashed_server_is_ended_by_stop(model_store):
    server = PrivateMms(model_store=model_store, workers=1)
    try:
        server.start()
        exporter = control.pid_file(server.run).process()
        frontend = psutil.Process(server.pid)
        family = [frontend] + frontend.children(recursive=True)
        for member in family:  # the whole MMS dies at once, as in an OOM kill
            member.send_signal(signal.SIGKILL)
        wait_until(lambda: server.run.server() is None, 30, "MMS to be gone")
        assert control.pid_file(server.run).process() is not None  # the exporter outlived it

        result = server.script("start_mms.sh", "stop")
        assert result.returncode == 0, result.stderr
        assert f"stopped the metrics exporter (pid {exporter.pid})" in result.stdout
        assert control.pid_file(server.run).process() is None
        assert not control.pid_file(server.run).path.exists()
    finally:
        server.stop()
        server.remove()
