"""The front door's metrics log: one line per request, written by nginx
(`log_format fizbuz_metrics escape=json`, buffered), read by the front door's
exporter into counters and histograms.

A line is tab-separated (escape=json turns any tab, newline or quote inside a
value into an escape, so a value never splits a line or a field):

    f2 <TAB> request URI <TAB> status <TAB> request time <TAB> upstream addresses
       <TAB> upstream statuses <TAB> upstream response times <TAB> upstream header times
       <TAB> the retry budget's verdict ("", granted, spent: serving/front/retry_budget.lua)

The upstream fields list one entry per try: ", " between tries of one
proxy_pass (proxy_next_upstream), " : " where an internal redirect started a
new one (error_page 507 = @retry). A try with header time "-" got no answer:
status 504 means it timed out, anything else (502) a connection error.
"""

import bisect
import re
import threading

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from fizbuz.contract import PREDICT_PATH
from fizbuz_codec import is_decimal

LOG_NAME = "metrics.log"  # in the front door's logs folder
VERSION = "f2"  # f2: the retry budget's verdict added (issue 23)
# The upstream fields through the front door's maps: the try of a v2 or gRPC
# call (a door.js subrequest) shows there as the card's own does.
NGINX_VARIABLES = (
    "$request_uri",
    "$status",
    "$request_time",
    "$fizbuz_upstream_addr",
    "$fizbuz_upstream_status",
    "$fizbuz_upstream_response_time",
    "$fizbuz_upstream_header_time",
    "$fizbuz_retry",
)
FIELDS = 1 + len(NGINX_VARIABLES)

REQUESTS = "fizbuz_front_requests"  # counter{route, status}
REQUEST_SECONDS = "fizbuz_front_request_seconds"  # histogram{route}
RETRIED = "fizbuz_front_retried_requests"  # counter{route, via}
RETRY_BUDGET = "fizbuz_front_retry_budget"  # counter{route, verdict}: retries granted / refused
VERDICTS = ("granted", "spent")
UPSTREAM_SECONDS = "fizbuz_front_upstream_seconds"  # histogram{host}: one observation per try
UPSTREAM_FAILURES = "fizbuz_front_upstream_failures"  # counter{host, reason}
LOG_LINES = "fizbuz_front_log_lines"  # counter: lines read
LOG_MALFORMED = "fizbuz_front_log_malformed_lines"  # counter
LOG_LAG = "fizbuz_front_log_lag_bytes"  # gauge: written but not read yet
LOG_ROTATIONS = "fizbuz_front_log_rotations"  # counter

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_HOSTS = 64  # distinct host labels kept; more fold into "other" (bounded memory)
ROUTES = {PREDICT_PATH: "predict", "/ready": "ready"}
TRY_SEPARATOR = re.compile(r", | : ")
HOST_PORT = re.compile(r"^[0-9A-Za-z.\-\[\]:]+:\d+$")


def nginx_log_format():
    """The log_format body for nginx.conf (nginx turns \\t into a tab)."""
    return "\\t".join((VERSION,) + NGINX_VARIABLES)


def route_of(uri):
    """A bounded label: the card's paths, v2 inference and the rest of v2, gRPC
    inference and the rest of gRPC, "other"."""
    path = uri.split("?", 1)[0]
    if path in ROUTES:
        return ROUTES[path]
    if path.startswith("/v2"):
        return "v2_infer" if path.endswith("/infer") else "v2"
    if path.startswith("/inference.GRPCInferenceService/"):
        return "grpc_infer" if path.endswith("/ModelInfer") else "grpc"
    return "other"


def _split(field):
    return TRY_SEPARATOR.split(field) if field else []


def failure_reason(status, header_time):
    """None for an answer that is not a host failure, else the label value:
    the host's 5xx status, "timeout" or "error" (refused, reset, bad answer)."""
    if header_time == "-" or status == "-":
        return "timeout" if status == "504" else "error"
    return status if status.startswith("5") else None


class Histograms:
    """Histograms by one label, kept as plain bucket counts (an observation is
    a bisect and two additions: cheap enough for every request)."""

    def __init__(self, buckets=BUCKETS):
        self.buckets = buckets
        self.series = {}  # label value -> [counts per bucket + overflow, sum]

    def observe(self, label, value):
        row = self.series.get(label)
        if row is None:
            row = self.series[label] = [[0] * (len(self.buckets) + 1), 0.0]
        row[0][bisect.bisect_left(self.buckets, value)] += 1
        row[1] += value

    def family(self, name, documentation, label_name):
        family = HistogramMetricFamily(name, documentation, labels=[label_name])
        for label, (counts, total) in sorted(self.series.items()):
            cumulative, running = [], 0
            for bound, count in zip(self.buckets, counts):
                running += count
                cumulative.append((repr(bound), running))
            running += counts[-1]
            cumulative.append(("+Inf", running))
            family.add_metric([label], cumulative, total)
        return family


class FrontCounts:
    """Everything counted from the log; `add_lines` and `families` take the
    same lock, so a scrape sees whole lines only."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}  # (route, status) -> count
        self.retried = {}  # (route, via) -> count
        self.budget = {}  # (route, verdict) -> count
        self.failures = {}  # (host, reason) -> count
        self.request_seconds = Histograms()
        self.upstream_seconds = Histograms()
        self.lines = 0
        self.malformed = 0
        self.hosts = set()  # host labels given out so far (at most MAX_HOSTS)

    def _host(self, address):
        if address in self.hosts:
            return address
        if not HOST_PORT.match(address):
            return "none"  # e.g. an upstream group's name: no live host was left to try
        if len(self.hosts) >= MAX_HOSTS:
            return "other"
        self.hosts.add(address)
        return address

    def add_lines(self, lines):
        with self.lock:
            for line in lines:
                self._add(line)

    def _add(self, raw):
        fields = raw.decode("utf-8", "replace").split("\t")
        if len(fields) != FIELDS or fields[0] != VERSION or len(fields[2]) != 3 or not is_decimal(fields[2]):
            self.malformed += 1
            return
        _, uri, status, request_time, addresses, statuses, times, header_times, verdict = fields
        try:
            seconds = float(request_time)
        except ValueError:
            self.malformed += 1
            return
        self.lines += 1
        route = route_of(uri)
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.request_seconds.observe(route, seconds)
        if verdict in VERDICTS:
            key = (route, verdict)
            self.budget[key] = self.budget.get(key, 0) + 1
        if not addresses or addresses == "-":
            return
        tries = list(zip(_split(addresses), _split(statuses), _split(times), _split(header_times)))
        if len(tries) > 1:
            via = "error_page_507" if " : " in statuses else "next_upstream"
            key = (route, via)
            self.retried[key] = self.retried.get(key, 0) + 1
        for address, try_status, try_time, header_time in tries:
            host = self._host(address)
            try:
                self.upstream_seconds.observe(host, float(try_time))
            except ValueError:
                pass  # "-": no time for a try that never got a connection
            reason = failure_reason(try_status, header_time)
            if reason is not None:
                key = (host, reason)
                self.failures[key] = self.failures.get(key, 0) + 1

    def families(self):
        with self.lock:
            requests = CounterMetricFamily(
                REQUESTS, "Requests answered by the front door, by route and status", labels=["route", "status"]
            )
            for (route, status), count in sorted(self.requests.items()):
                requests.add_metric([route, status], count)
            retried = CounterMetricFamily(
                RETRIED,
                "Requests that needed a second upstream try (via proxy_next_upstream or the 507 error_page retry)",
                labels=["route", "via"],
            )
            for (route, via), count in sorted(self.retried.items()):
                retried.add_metric([route, via], count)
            budget = CounterMetricFamily(
                RETRY_BUDGET,
                "Failed tries the retry budget let through to another host (granted) or answered 503 instead (spent)",
                labels=["route", "verdict"],
            )
            for (route, verdict), count in sorted(self.budget.items()):
                budget.add_metric([route, verdict], count)
            failures = CounterMetricFamily(
                UPSTREAM_FAILURES,
                "Upstream tries that failed, by host and reason (the host's 5xx status, timeout, error)",
                labels=["host", "reason"],
            )
            for (host, reason), count in sorted(self.failures.items()):
                failures.add_metric([host, reason], count)
            return [
                requests,
                self.request_seconds.family(
                    REQUEST_SECONDS, "Time the front door took per request (nginx $request_time)", "route"
                ),
                retried,
                budget,
                self.upstream_seconds.family(
                    UPSTREAM_SECONDS, "Time of each upstream try, by host (nginx $upstream_response_time)", "host"
                ),
                failures,
                CounterMetricFamily(LOG_LINES, "Metrics log lines counted", value=self.lines),
                CounterMetricFamily(LOG_MALFORMED, "Metrics log lines that could not be read", value=self.malformed),
            ]


def tail_families(tail):
    """The reader's own state, for seeing an exporter that falls behind."""
    return [
        GaugeMetricFamily(LOG_LAG, "Bytes of the metrics log not read yet", value=tail.lag_bytes()),
        CounterMetricFamily(LOG_ROTATIONS, "Times the metrics log was rotated", value=tail.rotations),
    ]
