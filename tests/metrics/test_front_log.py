"""The front door's metrics without a server: nginx's log lines (as nginx 1.22
writes them, including retries, timeouts and refused connections) into counts,
and following the log file across partial lines, rotation and truncation."""

import os
import subprocess

import pytest

from fizbuz.contract import PREDICT_PATH
from fizbuz.lifecycle import wait_until
from serving.front.config import FrontSettings, render
from serving.front.metrics import log as front_log
from serving.front.metrics.exporter import Follower
from serving.metrics.logtail import LogTail
from serving.metrics.scrape import Samples, parse
from prometheus_client import CollectorRegistry, generate_latest

H1, H2 = "10.9.0.2:8080", "10.9.0.3:8080"


def line(uri, status, seconds, addresses="", statuses="", times="", header_times="", verdict=""):
    return "\t".join(["f2", uri, str(status), seconds, addresses, statuses, times, header_times, verdict]).encode()


class Registry:
    def __init__(self, counts):
        self.counts = counts

    def collect(self):
        return self.counts.families()


def exported(counts):
    registry = CollectorRegistry()
    registry.register(Registry(counts))
    return Samples(parse(generate_latest(registry).decode()))


def test_the_rendered_nginx_config_writes_the_fields_the_reader_expects():
    conf = render(FrontSettings(listen="127.0.0.1:1", hosts=[H1, H2], certificate="c", key="k"), "/p")
    expected = "log_format fizbuz_metrics escape=json '" + "\\t".join(("f2",) + front_log.NGINX_VARIABLES) + "';"
    assert expected in conf
    assert "access_log /p/logs/metrics.log fizbuz_metrics buffer=64k flush=1s;" in conf
    off = render(FrontSettings(listen="127.0.0.1:1", hosts=[H1], certificate="c", key="k", metrics_log=False), "/p")
    assert "metrics.log" not in off


def test_lines_become_requests_retries_upstream_times_and_failures():
    counts = front_log.FrontCounts()
    counts.add_lines(
        [
            line(PREDICT_PATH, 200, "0.004", H1, "200", "0.004", "0.004"),
            line(PREDICT_PATH, 400, "0.003", H2, "400", "0.003", "0.003"),  # bad input: not a host failure
            line(PREDICT_PATH, 401, "0.000"),  # refused at the door
            line(PREDICT_PATH, 200, "0.020", f"{H1}, {H2}", "500, 200", "0.010, 0.009", "0.010, 0.009"),
            line(PREDICT_PATH, 200, "0.007", f"{H2}, {H1}", "502, 200", "0.000, 0.006", "-, 0.006"),  # refused
            line(PREDICT_PATH, 200, "3.012", f"{H1}, {H2}", "504, 200", "3.001, 0.010", "-, 0.010"),  # timed out
            line(PREDICT_PATH, 200, "0.015", f"{H1} : {H2}", "507 : 200", "0.008 : 0.006", "0.008 : 0.006"),
            line(PREDICT_PATH, 503, "0.001", "fizbuz_hosts", "502", "0.000", "-"),  # no live upstream
            line("/ready", 200, "0.005", H2, "200", "0.005", "0.005"),
            line("/metrics?x=1", 404, "0.000"),
            b"not a line of ours",
            line(PREDICT_PATH, "2x0", "0.1"),
        ]
    )
    samples = exported(counts)
    requests = "fizbuz_front_requests_total"
    assert samples.total(requests, route="predict", status="200") == 5
    assert samples.total(requests, route="predict", status="400") == 1
    assert samples.total(requests, route="predict", status="401") == 1
    assert samples.total(requests, route="predict", status="503") == 1
    assert samples.total(requests, route="ready") == 1 and samples.total(requests, route="other", status="404") == 1
    retried = "fizbuz_front_retried_requests_total"
    assert samples.total(retried, via="next_upstream") == 3 and samples.total(retried, via="error_page_507") == 1
    failures = "fizbuz_front_upstream_failures_total"
    assert samples.total(failures, host=H1, reason="500") == 1
    assert samples.total(failures, host=H2, reason="error") == 1
    assert samples.total(failures, host=H1, reason="timeout") == 1
    assert samples.total(failures, host=H1, reason="507") == 1
    assert samples.total(failures, host="none", reason="error") == 1
    assert samples.total(failures) == 5
    # One observation per try with a time; the timed-out try lands in the 5 s bucket.
    assert samples.total("fizbuz_front_upstream_seconds_count", host=H1) == 5
    assert samples.total("fizbuz_front_upstream_seconds_count", host=H2) == 6
    assert samples.total("fizbuz_front_upstream_seconds_bucket", host=H1, le="2.5") == 4
    assert samples.total("fizbuz_front_upstream_seconds_bucket", host=H1, le="5.0") == 5
    assert samples.total("fizbuz_front_request_seconds_count", route="predict") == 8
    assert samples.total("fizbuz_front_request_seconds_bucket", route="predict", le="0.005") == 4
    assert samples.total("fizbuz_front_request_seconds_sum", route="predict") == pytest.approx(3.062)
    assert samples.total("fizbuz_front_log_lines_total") == 10
    assert samples.total("fizbuz_front_log_malformed_lines_total") == 2


def test_host_labels_are_bounded():
    counts = front_log.FrontCounts()
    counts.add_lines(
        [
            line(PREDICT_PATH, 200, "0.001", f"10.1.{n // 250}.{n % 250}:80", "200", "0.001", "0.001")
            for n in range(front_log.MAX_HOSTS + 20)
        ]
    )
    assert len(counts.upstream_seconds.series) == front_log.MAX_HOSTS + 1  # the rest under "other"
    assert counts.upstream_seconds.series["other"][0][0] == 20


def test_tail_waits_for_the_newline_and_starts_at_the_beginning(tmp_path):
    path = tmp_path / "metrics.log"
    path.write_bytes(b"one\ntwo\nthr")
    tail = LogTail(path)
    assert tail.read_lines() == [b"one", b"two"]  # written before the reader came: counted
    assert tail.read_lines() == []
    with open(path, "ab") as log:
        log.write(b"ee\nfour\n")
    assert tail.read_lines() == [b"three", b"four"]
    assert tail.lag_bytes() == 0


def test_tail_follows_a_rotation_after_the_old_file_settles(tmp_path):
    now = [0.0]
    path = tmp_path / "metrics.log"
    path.write_bytes(b"a\n")
    tail = LogTail(path, settle=2.0, clock=lambda: now[0])
    assert tail.read_lines() == [b"a"]
    os.replace(path, str(path) + ".1")
    old = open(str(path) + ".1", "ab")
    path.write_bytes(b"new1\n")
    assert tail.read_lines() == []  # rotation seen; the old file may still get a flush
    old.write(b"b\n")
    old.flush()
    now[0] = 1.0
    assert tail.read_lines() == [b"b"]  # the server's last flush into the old file
    assert tail.read_lines() == []
    now[0] = 2.5
    assert tail.read_lines() == []  # quiet since 1.0 only
    now[0] = 4.0
    assert tail.read_lines() == []  # settled: switched to the new file
    assert tail.rotations == 1
    assert tail.read_lines() == [b"new1"]


def test_tail_reads_a_truncated_file_again_from_the_start(tmp_path):
    path = tmp_path / "metrics.log"
    path.write_bytes(b"a\nb\n")
    tail = LogTail(path)
    assert tail.read_lines() == [b"a", b"b"]
    path.write_bytes(b"c\n")  # truncated and rewritten, shorter
    assert tail.read_lines() == []
    assert tail.read_lines() == [b"c"]


def test_the_exporter_rotates_a_full_log_and_signals_nginx(tmp_path):
    """maybe_rotate with a stand-in for the nginx master (its command line has
    the pid file's marker): the log is renamed and the master gets USR1."""
    signalled = tmp_path / "signalled"
    stand_in = subprocess.Popen(
        [
            "bash",
            "-c",
            'trap \'echo reopened > "$0"; exit 0\' USR1; echo ready > "$0"; while :; do read -t 1 || :; done',
            str(signalled),
            "nginx",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        wait_until(signalled.exists, 10, "the stand-in to set its trap")
        pid_file = tmp_path / "nginx.pid"
        pid_file.write_text(f"{stand_in.pid}\n")
        path = tmp_path / "metrics.log"
        path.write_bytes(line(PREDICT_PATH, 200, "0.001") + b"\n")
        counts = front_log.FrontCounts()
        follower = Follower(LogTail(path), counts, str(pid_file), rotate_bytes=10)
        assert follower.step() is True and counts.lines == 1
        assert follower.step() is False  # nothing new: rotates
        assert (tmp_path / "metrics.log.1").exists() and not path.exists()
        assert stand_in.wait(10) == 0 and signalled.read_text() == "reopened\n"
    finally:
        stand_in.kill()
        stand_in.wait()
