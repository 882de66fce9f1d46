"""A real Prometheus scrapes the front door's exporter; what it reads back
through its HTTP query API equals what the test sent through the front door:
good requests, bad input (400), no token (401), and, with one host's MMS
killed, requests the front door retried on the other host. Also: the exporter
killed under load fails no request and, started again, has lost no count."""

import concurrent.futures
import signal

import psutil
import pytest

from fizbuz import answers
from fizbuz.contract import MAX_INPUT
from fizbuz.lifecycle import wait_until
from serving.front.fleet import Options
from serving.front.metrics import control as front_control
from serving.front.metrics import log as front_log
from serving.metrics.logtail import flushed_and_read
from serving.metrics.prometheus import PrivatePrometheus
from serving.metrics.scrape import scrape

pytestmark = pytest.mark.e2e

GOOD, BAD, UNAUTHORIZED, GOOD_WHILE_A_HOST_IS_DOWN = 300, 30, 20, 120
PREDICT = 'sum(fizbuz_front_requests_total{{route="predict",status="{}"}})'
RETRIED = "sum(fizbuz_front_retried_requests_total)"
FAILURES = 'sum(fizbuz_front_upstream_failures_total{{host="{}"}})'
HOST_UP = 'fizbuz_front_host_up{{host="{}"}}'
LINES_READ = "fizbuz_front_log_lines_total + fizbuz_front_log_malformed_lines_total"


def metrics_url(fleet):
    return f"http://127.0.0.1:{fleet.state['metrics_port']}/metrics"


@pytest.fixture
def prometheus(fleet):
    fleet.healthy()
    with PrivatePrometheus([f"127.0.0.1:{fleet.state['metrics_port']}"], interval="1s", job="fizbuz-front") as server:
        wait_until(server.targets_up, 60, "Prometheus to scrape the front door's exporter")
        yield server


def value_now(prometheus, promql):
    """The value of the newest scrape (0 for a series not there yet)."""
    return prometheus.value(promql) or 0.0


def reaches(prometheus, promql, expected, timeout=60):
    wait_until(
        lambda: value_now(prometheus, promql) >= expected,
        timeout,
        f"{promql} to reach {expected} (now {value_now(prometheus, promql)})",
        interval=0.25,
    )
    return value_now(prometheus, promql)


def settle(fleet, lines_read):
    """Wait until every request that has ended is in the metrics log (nginx
    buffers it per worker) and the exporter has read all of it."""
    path = fleet.fleet.door.logs / front_log.LOG_NAME
    wait_until(
        flushed_and_read(path, lambda: lines_read() == len(path.read_bytes().splitlines())),
        60,
        "the metrics log to be flushed and read",
        interval=0.2,
    )


def send(fleet, jobs):
    """Each job ("good" | "bad" | "no token", n) from 16 threads; every reply checked."""

    def ask(job):
        kind, n = job
        if kind == "good":
            status, _, text = fleet.predict(n % (MAX_INPUT + 1))
            return answers.reply_is_right(n % (MAX_INPUT + 1), status, text)
        if kind == "bad":
            return fleet.predict(MAX_INPUT + 1 + n)[0] == 400
        return fleet.predict(n, token=None)[0] == 401

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies_ok = list(pool.map(ask, jobs))
    assert all(replies_ok), f"{replies_ok.count(False)} of {len(jobs)} replies were not as expected"


def retried_in_access_log(fleet, after):
    """nginx's own text access log, read independently: requests with more than
    one upstream try ("502, 200" or "507 : 200"), and failed tries per host."""
    retried, failed_tries = 0, {}
    for line in fleet.fleet.door.access_log.read_text().splitlines()[after:]:
        if "ustatus=" not in line:
            continue
        addresses = line.split("upstream=")[1].split(" ustatus=")[0].replace(" : ", ", ").split(", ")
        statuses = line.split("ustatus=")[1].split(" urt=")[0].replace(" : ", ", ").split(", ")
        retried += len(statuses) > 1
        for address, status in zip(addresses, statuses):
            if status.startswith("5"):
                failed_tries[address] = failed_tries.get(address, 0) + 1
    return retried, failed_tries


def test_prometheus_reads_back_what_went_through_the_front_door(fleet, prometheus):
    h1, h2 = fleet.hosts
    settle(fleet, lambda: value_now(prometheus, LINES_READ))  # earlier tests' requests: all in the baseline
    before = {status: value_now(prometheus, PREDICT.format(status)) for status in (200, 400, 401)}
    before["retried"] = value_now(prometheus, RETRIED)
    before["h2 failures"] = value_now(prometheus, FAILURES.format(h2.upstream))
    log_start = fleet.access_log_size()
    assert value_now(prometheus, HOST_UP.format(h2.upstream)) == 1

    jobs = [("good", n) for n in range(GOOD)]
    jobs += [("bad", n) for n in range(BAD)] + [("no token", n) for n in range(UNAUTHORIZED)]
    send(fleet, sorted(jobs, key=lambda job: job[1]))  # interleaved

    # h2's MMS dies (frontend and workers): its connections are refused, and
    # the front door sends those requests to h1.
    family = [h2.frontend()] + list(h2.worker_processes().values())
    for process in family:
        process.kill()
    psutil.wait_procs(family, timeout=10)
    try:
        send(fleet, [("good", n) for n in range(GOOD_WHILE_A_HOST_IS_DOWN)])
        total = GOOD + BAD + UNAUTHORIZED + GOOD_WHILE_A_HOST_IS_DOWN
        wait_until(lambda: fleet.access_log_size() - log_start >= total, 30, "nginx to flush its access log")
        retried, failed_tries = retried_in_access_log(fleet, log_start)
        assert retried >= 1, "no request met the dead host"

        assert (
            reaches(prometheus, PREDICT.format(200), before[200] + GOOD + GOOD_WHILE_A_HOST_IS_DOWN)
            == before[200] + GOOD + GOOD_WHILE_A_HOST_IS_DOWN
        )
        assert reaches(prometheus, PREDICT.format(400), before[400] + BAD) == before[400] + BAD
        assert reaches(prometheus, PREDICT.format(401), before[401] + UNAUTHORIZED) == before[401] + UNAUTHORIZED
        assert reaches(prometheus, RETRIED, before["retried"] + retried) == before["retried"] + retried
        assert (
            reaches(prometheus, FAILURES.format(h2.upstream), before["h2 failures"] + failed_tries[h2.upstream])
            == before["h2 failures"] + failed_tries[h2.upstream]
        )
        assert set(failed_tries) == {h2.upstream}  # h1 failed nothing
        assert value_now(prometheus, 'sum(fizbuz_front_requests_total{route="predict",status=~"5.."})') == 0
        assert (
            reaches(prometheus, f'fizbuz_front_upstream_failures_total{{host="{h2.upstream}",reason="error"}}', 1) >= 1
        )
        # The probe sees h2 down and h1 up.
        wait_until(
            lambda: (
                value_now(prometheus, HOST_UP.format(h2.upstream)) == 0
                and value_now(prometheus, HOST_UP.format(h1.upstream)) == 1
            ),
            30,
            "host_up to show h2 down",
        )
        print(f"{retried} requests retried on h1 while h2 was down")
    finally:
        fleet.healthy()  # fleet start restarts h2's MMS
    wait_until(lambda: value_now(prometheus, HOST_UP.format(h2.upstream)) == 1, 30, "host_up to show h2 back")


def test_killing_the_exporter_under_load_fails_nothing_and_loses_no_count(fleet):
    fleet.healthy()
    url = metrics_url(fleet)
    predicted = lambda: scrape(url).total("fizbuz_front_requests_total", route="predict", status="200")
    before = fleet.front_metrics().total("fizbuz_front_requests_total", route="predict", status="200")
    exporter = front_control.running(fleet.fleet.dir)
    with fleet.load(16) as load:
        load.wait_for_answers(500)
        exporter.send_signal(signal.SIGKILL)
        wait_until(lambda: front_control.running(fleet.fleet.dir) is None, 30, "the exporter to end")
        load.wait_for_answers(load.result.answered + 500)  # serving does not notice
    summary = load.result.summary()
    assert summary["failed"] == 0 and summary["wrong"] == 0, summary
    fleet.fleet.start(Options())  # brings the exporter back (as it does a dead host or nginx)
    again = front_control.running(fleet.fleet.dir)
    assert again is not None and again.pid != exporter.pid
    # It reads the metrics log from its start: every request is counted again, none lost.
    wait_until(lambda: predicted() >= before + summary["answered"], 30, "the new exporter to catch up")
    assert predicted() == before + summary["answered"]
