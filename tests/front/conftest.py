"""A real fleet for the front door tests: MMS hosts in network namespaces made
for this run (names carry a random id), nginx on a free port, all in a short
temp folder; stopped and removed (processes, namespaces, veths, bridge) at the end.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fizbuz.contract import ROOT, request_body
from fizbuz.lifecycle import LifecycleError, free_ports, wait_until
from serving.front import client, network, tokens
from serving.front.fleet import Fleet, Options
from serving.front.nginx import FrontDoor
from serving.front.metrics import log as front_log
from serving.mms.config import make_self_signed
from serving.mms.metrics.control import metrics_url
from serving.metrics.logtail import flushed_and_read
from serving.metrics.scrape import scrape

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def nginx_installed():
    result = subprocess.run([str(ROOT / "serving/front/setup_nginx.sh")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def front_door(tmp_path):
    """A FrontDoor in tmp_path, stopped at the end: nginx, and the /ready cache
    that root's door makes outside its prefix."""
    door = FrontDoor(tmp_path / "front")
    yield door
    door.stop()


@pytest.fixture
def tls_pair(tmp_path):
    """A self-signed certificate and key: c.pem and k.pem in a folder."""
    pair = tmp_path / "tls"
    make_self_signed(pair / "c.pem", pair / "k.pem")
    return pair


@pytest.fixture
def token_file(tmp_path):
    """A tokens file with one token, "default"."""
    path = tmp_path / "tokens.txt"
    tokens.add(path, "default")
    return path


class RunningFleet:
    """The fleet plus what a test needs to talk to it."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.refresh()

    def refresh(self):
        self.state = self.fleet.require()
        self.address, port = self.state["front"]["listen"].rsplit(":", 1)
        self.port = int(port)
        self.cafile = self.state["front"]["certificate"]
        self.token = tokens.read(self.fleet.token_file)["default"]
        self.settings = self.fleet.settings(self.state)
        return self

    @property
    def hosts(self):
        return self.fleet.hosts(self.fleet.require())

    def request(self, method="POST", path=client.PREDICT_PATH, token="default", body=None, headers=None):
        token = self.token if token == "default" else token
        return client.request(self.address, self.port, method, path, self.cafile, token, body, headers)

    def predict(self, number, token="default"):
        return self.request(body=request_body(number), token=token, headers={"Content-Type": "application/json"})

    def load(self, concurrency=32, token=None, **kwargs):
        return client.Load(self.address, self.port, self.cafile, token or self.token, concurrency, **kwargs)

    @staticmethod
    def upstream_statuses(line):
        """Each try's status in an access-log line: "500, 200" (next upstream) or "507 : 200"
        (the error_page retry) are two tries; "-" or nothing is none (refused by nginx itself)."""
        statuses = line.split("ustatus=")[1].split(" urt=")[0].replace(":", ",").split(",")
        return [status.strip() for status in statuses if status.strip() not in ("", "-")]

    def retried_lines(self, after=0, where=lambda line: True):
        """Access-log lines (past the first `after`, and `where` says so) of requests whose
        first try failed with a 50x and were tried again: a fault that hit."""

        def retried(line):
            statuses = self.upstream_statuses(line)
            return where(line) and len(statuses) > 1 and statuses[0].startswith("50")

        return self.access_log_lines(timeout=3, predicate=lambda l: "ustatus=" in l and retried(l), after=after)

    @staticmethod
    def kill_a_batched_worker(host):
        """SIGKILL a worker of the batched registration (the one loaded clients
        reach), aimed at a busy moment: running (state R in /proc) it is most
        likely inside a batch; the spin for that moment is bounded. Waits until
        MMS has replaced the worker."""

        def a_ready_batched_worker():
            # Read both sides again until they meet: a worker MMS has just
            # replaced (an earlier kill) may be READY before its process shows
            # its socket, or gone from /proc while MMS still says READY.
            processes = host.worker_processes()
            ready = sorted({str(w["id"]) for w in host.ready_workers()} & set(processes))
            return processes[ready[0]] if ready else None

        victim = wait_until(a_ready_batched_worker, 60, "a ready worker of the batched registration with a process")
        deadline = time.monotonic() + 2.0
        stat = Path(f"/proc/{victim.pid}/stat")
        try:
            while time.monotonic() < deadline and stat.read_text().split(")")[-1].split()[0] != "R":
                pass
            os.kill(victim.pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass  # it died on its own meanwhile: MMS replaces it all the same
        wait_until(
            lambda: (
                victim.pid not in {p.pid for p in host.worker_processes().values()}
                and host.all_workers_ready()
                and a_ready_batched_worker()
            ),
            60,
            "a new worker",
        )

    def healthy(self, timeout=120):
        """Every host serving and in rotation, the front door ready: what each test starts from."""
        self.fleet.start(Options())  # restarts only what is not running
        wait_until(lambda: all(h.serving() for h in self.hosts), timeout, "the hosts to come back")
        return self.refresh()

    def front_metrics(self):
        """The front door's exporter's numbers, once every request that has ended
        is in the metrics log (nginx buffers it per worker) and read."""
        url = metrics_url(self.state["metrics_port"])
        path = self.fleet.door.logs / front_log.LOG_NAME

        def read_all():
            samples = scrape(url)
            read = samples.total("fizbuz_front_log_lines_total") + samples.total(
                "fizbuz_front_log_malformed_lines_total"
            )
            return read == len(path.read_bytes().splitlines())

        wait_until(flushed_and_read(path, read_all), 60, "the metrics log to be flushed and read", interval=0.2)
        return scrape(url)

    def access_log_size(self):
        return len(self.fleet.door.access_log.read_text().splitlines())

    def access_log_lines(self, timeout=10, predicate=lambda line: True, after=0):
        """nginx flushes its buffered access log every second: poll until a line
        (past the first `after` lines) matches."""

        def matching():
            return [l for l in self.fleet.door.access_log.read_text().splitlines()[after:] if predicate(l)]

        try:
            return wait_until(matching, timeout, "a matching access-log line")
        except LifecycleError:
            return []


def run_fleet(mar, **options):
    directory = Path(tempfile.mkdtemp(prefix="fbz-"))  # short: MMS socket paths live in it
    fleet = Fleet(directory)
    try:
        front_port, metrics_port = free_ports(2)
        fleet.start(Options(mar=str(mar), front_port=front_port, metrics_port=metrics_port, **options))
        return fleet
    except BaseException:
        stop_fleet(fleet)
        raise


def stop_fleet(fleet):
    state = fleet.load()
    try:
        fleet.stop()
    finally:
        if state is not None:
            network.teardown(state["id"])  # again, in case stop failed half-way
        shutil.rmtree(fleet.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def fleet(nginx_installed, mar_path):
    started = run_fleet(mar_path, hosts=2, workers=2)
    try:
        yield RunningFleet(started)
    finally:
        stop_fleet(started)


@pytest.fixture(scope="module")
def small_fleet(nginx_installed, mar_path, tmp_path_factory):
    """Capacity made small on purpose (issue 23's overload tests): one host, one
    worker, batch 1, a test-only archive that sleeps `sleep_ms` per batch, and a
    front door admitting `admission` requests per host entry. One nginx worker:
    one access-log buffer, so a marker line (`mark`) follows every earlier line."""
    from fizbuz import archive  # noqa: PLC0415  (only the tests that ask for it)

    sleep_ms, admission = 40, 4  # ~20 requests/s: 4x stays within what the Python generator keeps up with
    slow = archive.variant(mar_path, tmp_path_factory.mktemp("slow") / mar_path.name, batch_sleep_ms=sleep_ms)
    started = run_fleet(
        slow,
        hosts=1,
        workers=1,
        routing="batched",
        single_workers=0,
        batch_size=1,
        admission=admission,
        nginx_workers="1",
    )
    try:
        running = RunningFleet(started)
        running.sleep_ms, running.admission = sleep_ms, admission
        yield running
    finally:
        stop_fleet(started)


@pytest.fixture(scope="module")
def budget_fleet(nginx_installed, mar_path, tmp_path_factory):
    """For the retry budget's tests (issue 23): two hosts of one worker of batch 1,
    a test-only archive that sleeps `sleep_ms` per batch (a worker holds its
    request long enough to be killed holding it) and fails every batch holding
    `fail` (a 500 on any worker: a first try that fails on purpose). The share
    starts tiny (`quiet_share`: a few successes pay for no retry; only the floor does)."""
    from fizbuz import archive  # noqa: PLC0415  (only the tests that ask for it)

    sleep_ms, fail, quiet_share, floor = 150, 7, 0.001, 1.0
    failing = archive.variant(
        mar_path, tmp_path_factory.mktemp("failing") / mar_path.name, batch_sleep_ms=sleep_ms, fail_input=fail
    )
    started = run_fleet(
        failing,
        hosts=2,
        workers=1,
        routing="batched",
        single_workers=0,
        batch_size=1,
        nginx_workers="1",
        retry_share=quiet_share,
        retry_floor=floor,
    )
    try:
        running = RunningFleet(started)
        running.sleep_ms, running.fail, running.quiet_share, running.floor = sleep_ms, fail, quiet_share, floor
        yield running
    finally:
        stop_fleet(started)
