"""The fleet as a user drives it: fleet.sh start, env + the README's curl, status,
then kill -9 of every part and `stop` leaves nothing behind. Also the loopback
fallback (what a user without root gets)."""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from fizbuz.contract import PREDICT_PATH, ROOT, SMOKE_INPUT, request_body
from fizbuz.lifecycle import free_port, free_ports, wait_until
from serving.front import network
from serving.front.fleet import Fleet
from serving.front.metrics import control as front_control
from serving.metrics.scrape import scrape

pytestmark = pytest.mark.e2e
FLEET_SH = ROOT / "serving" / "front" / "fleet.sh"
README_CURL = (
    'curl -sS --cacert "$FIZBUZ_CACERT" -H "Authorization: Bearer $FIZBUZ_TOKEN" '
    f"-H 'Content-Type: application/json' -d '{request_body(SMOKE_INPUT).decode()}' "
    f'"$FIZBUZ_URL{PREDICT_PATH}"'
)


@pytest.fixture
def fleet_dir(nginx_installed):
    directory = Path(tempfile.mkdtemp(prefix="fbz-"))
    try:
        yield directory
    finally:
        state = Fleet(directory).load()
        subprocess.run(
            [str(FLEET_SH), "stop"], env=dict(os.environ, FLEET_DIR=str(directory)), capture_output=True, timeout=300
        )
        if state:
            network.teardown(state["id"])
        shutil.rmtree(directory, ignore_errors=True)


def fleet_sh(directory, *args, **env):
    return subprocess.run(
        [str(FLEET_SH), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, FLEET_DIR=str(directory), **env),
        stdin=subprocess.DEVNULL,
    )


def what_is_left(directory, fleet_id):
    spaces, links = network.leftovers(fleet_id)
    processes = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(directory) in word for word in process.info["cmdline"] or []) or (
                process.name() == "nginx" and any(str(directory) in f.path for f in process.open_files())
            ):
                processes.append(process.pid)
        except psutil.Error:
            continue
    return spaces, links, processes


def test_start_env_curl_status_then_kill_9_everything_and_stop_cleans_up(fleet_dir, mar_path):
    front_port, metrics_port = free_ports(2)
    started = fleet_sh(
        fleet_dir,
        "start",
        HOSTS="2",
        WORKERS="1",
        FRONT_PORT=str(front_port),
        FRONT_METRICS_PORT=str(metrics_port),
        MAR=str(mar_path),
    )
    assert started.returncode == 0, started.stdout + started.stderr
    answer = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; eval "$({FLEET_SH} env)"; {README_CURL}'],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, FLEET_DIR=str(fleet_dir)),
    )
    assert answer.stdout == '{"next_number": "FizzBuzz"}\n', answer.stderr

    status = fleet_sh(fleet_dir, "status")
    # Per host: 1 batched worker and the batch-1 registration's workers (adaptive batching, the default).
    from serving.front.fleet import Options

    assert status.returncode == 0 and "/ready 200" in status.stdout, status.stdout
    assert status.stdout.count("READY") == 2 * (1 + Options.single_workers), status.stdout
    assert status.stdout.count("fizbuz_package_single (batch 1, delay 0 ms)") == 2
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert f"metrics {metrics_url}  exporter pid " in status.stdout
    assert f"export FIZBUZ_METRICS_URL={metrics_url}" in fleet_sh(fleet_dir, "env").stdout
    # The README's curl and the /ready checks went through the front door: the exporter counted them.
    front_metrics = wait_until(
        lambda: [
            s
            for s in [scrape(metrics_url)]
            if s.total("fizbuz_front_requests_total", route="predict", status="200") >= 1
        ],
        30,
        "the exporter to count the README's request",
    )[0]
    assert front_metrics.total("fizbuz_front_host_up") == 2

    fleet = Fleet(fleet_dir)
    state = fleet.require()
    assert state["mode"] == "netns"
    assert all(ns in network.leftovers(state["id"])[0] for ns in (h.namespace for h in fleet.hosts(state)))
    bridge = f"fbz{state['id']}"
    if shutil.which("iptables"):  # the bridge's FORWARD rule, for hosts where Docker drops forwarding
        assert network.forwarding_rules(bridge) == 1
    # Crash every part: the nginx master (its workers live on, orphaned), each MMS frontend, a worker.
    victims = [fleet.door.master(), front_control.running(fleet_dir)] + [h.frontend() for h in fleet.hosts(state)]
    victims.append(next(iter(fleet.hosts(state)[0].worker_processes().values())))
    for process in victims:
        os.kill(process.pid, signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    assert any(what_is_left(fleet_dir, state["id"]))

    stopped = fleet_sh(fleet_dir, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert what_is_left(fleet_dir, state["id"]) == ([], [], [])
    assert network.forwarding_rules(bridge) == 0
    assert not fleet.state_file.exists()


def test_loopback_fallback_serves_through_the_front_door(fleet_dir, mar_path):
    fleet = Fleet(fleet_dir)
    from serving.front.fleet import Options

    try:
        front_port, metrics_port = free_ports(2)
        state = fleet.start(
            Options(
                hosts=1, workers=1, loopback=True, front_port=front_port, metrics_port=metrics_port, mar=str(mar_path)
            )
        )
        assert state["mode"] == "loopback" and state["hosts"][0]["address"].startswith("127.77.")
        assert network.leftovers(state["id"]) == ([], [])  # no namespace, no link
        assert fleet.ready()[0] == 200
    finally:
        fleet.stop()
    assert what_is_left(fleet_dir, state["id"]) == ([], [], [])


def test_front_door_alone_over_given_hosts(fleet, fleet_dir):
    """Real hosts: start_mms.sh runs on each; the front door is given their addresses."""
    door_only = Fleet(fleet_dir)
    from serving.front.fleet import Options

    hosts = [h.upstream for h in fleet.hosts]
    try:
        state = door_only.start(Options(external_hosts=hosts, front_port=free_port(), metrics_port=0))
        assert state["mode"] == "external" and state["front"]["hosts"] == hosts and state["hosts"] == []
        assert door_only.ready()[0] == 200
        assert "run elsewhere" in door_only.status()
    finally:
        door_only.stop()
    assert all(h.serving() for h in fleet.hosts)  # stopping the door left the hosts alone


def test_adaptive_front_door_refuses_given_hosts_without_the_batch_1_registration(fleet_dir):
    from serving.front.fleet import FleetError, Options

    silent = f"127.0.0.1:{free_port()}"  # nothing listens there: no fizbuz_package_single either
    door_only = Fleet(fleet_dir)
    try:
        with pytest.raises(FleetError, match="FIZBUZ_SINGLE_WORKERS=2 ./start_mms.sh"):
            door_only.start(Options(external_hosts=[silent], front_port=free_port()))
    finally:
        door_only.stop()
