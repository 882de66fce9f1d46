"""Hosts up, for the front door's exporter: at scrape time, each host behind
the front door is sent the smoke prediction straight (not through nginx),
with a short timeout, all at once; 1 when it answers right. A result is
reused for `min_interval` seconds, so however often /metrics is scraped, a
host gets at most one probe per interval.

The hosts (and which are drained) come from the fleet's state file, read at
each probe, so a drain or an undrain shows without restarting the exporter.
"""

import concurrent.futures
import json
import logging
import threading
import time

from prometheus_client.core import GaugeMetricFamily

from fizbuz.http_client import answers_smoke_request
from fizbuz.contract import PREDICT_PATH

log = logging.getLogger(__name__)

HOST_UP = "fizbuz_front_host_up"  # gauge{host}
HOST_DRAINED = "fizbuz_front_host_drained"  # gauge{host}


def hosts_from_state(state_file):
    """([host "addr:port", ...], {drained}) from the fleet's state file; ([], set()) when unreadable."""
    try:
        front = json.loads(open(state_file).read())["front"]
        return list(front["hosts"]), set(front.get("drained", []))
    except (OSError, ValueError, KeyError) as error:
        log.warning("cannot read the hosts from %s: %s", state_file, error)
        return [], set()


class HostProbe:
    def __init__(self, state_file, timeout=0.5, min_interval=1.0, clock=time.monotonic):
        self.state_file = state_file
        self.timeout = timeout
        self.min_interval = min_interval
        self.clock = clock
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.last = None  # (when, [(host, up, drained)])

    def _probe(self, host):
        return answers_smoke_request(f"http://{host}{PREDICT_PATH}", timeout=self.timeout)

    def results(self):
        with self.lock:  # one probe round at a time; concurrent scrapes share it
            if self.last is not None and self.clock() - self.last[0] < self.min_interval:
                return self.last[1]
            hosts, drained = hosts_from_state(self.state_file)
            answers = list(self.pool.map(self._probe, hosts))
            self.last = (self.clock(), [(h, up, h in drained) for h, up in zip(hosts, answers)])
            return self.last[1]

    def families(self):
        up = GaugeMetricFamily(
            HOST_UP,
            "1 when the host answered a smoke prediction right at this scrape (probed straight, short timeout)",
            labels=["host"],
        )
        drained = GaugeMetricFamily(HOST_DRAINED, "1 when the host is drained at the front door", labels=["host"])
        for host, answered, is_drained in self.results():
            up.add_metric([host], 1.0 if answered else 0.0)
            drained.add_metric([host], 1.0 if is_drained else 0.0)
        return [up, drained]

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
