"""What the handler cannot see about workers, read by the exporter: workers by
state (MMS's management API, asked at scrape time), each worker's resident
memory, and restarts (a worker id that comes back with a new pid).

MMS 1.0.8 does not report worker pids; they are found by the socket path in
each worker's command line (serving.mms.process.worker_processes). A tracker
thread looks every `interval` seconds, so restarts are counted between scrapes
too (two restarts of one worker within one interval count as one).
"""

import logging
import threading

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fizbuz.contract import MODEL_NAME
from serving.mms import management
from serving.mms.process import worker_processes

log = logging.getLogger(__name__)

WORKERS = "fizbuz_workers"  # gauge{model, state}
WORKER_RESTARTS = "fizbuz_worker_restarts"  # counter: fizbuz_worker_restarts_total{model}
WORKER_RSS = "fizbuz_worker_resident_memory_bytes"  # gauge{model, worker}
MANAGEMENT_UP = "fizbuz_management_api_up"  # gauge{model}: 1 when the management API answered
# States MMS 1.0.8 reports (WorkerState); READY is always exported, 0 included.
ALWAYS_REPORTED = ("READY",)


class WorkerTracker:
    """Worker pids by id, refreshed by `poll()`; counts restarts."""

    def __init__(self, run, on_change=None):
        self.run = run
        self.on_change = on_change  # called after a pid went away (to fold its metric files)
        self.lock = threading.Lock()
        self.processes = {}  # worker id -> psutil.Process, as last listed
        # worker id -> the last pid seen; kept while a worker is missing, since
        # MMS brings a dead worker back under the same id a moment later.
        self.last_pid = {}
        self.restarts = 0

    def poll(self):
        # One poll at a time (the tracker thread and a scrape may both ask):
        # an older listing must never overwrite a newer one.
        with self.lock:
            found = worker_processes(self.run)
            for wid, process in found.items():
                before = self.last_pid.get(wid)
                if before is not None and before != process.pid:
                    self.restarts += 1
                    log.info("worker %s restarted: pid %d -> %d", wid, before, process.pid)
                self.last_pid[wid] = process.pid
            gone = {p.pid for p in self.processes.values()} - {p.pid for p in found.values()}
            self.processes = found
        if gone and self.on_change is not None:
            self.on_change()
        return found

    def snapshot(self):
        with self.lock:
            return dict(self.processes), self.restarts


class WorkerCollector:
    """A prometheus_client custom collector: asked at every scrape."""

    def __init__(self, tracker, management_port, model=MODEL_NAME, timeout=2.0):
        self.tracker = tracker
        self.management_port = management_port
        self.model = model
        self.timeout = timeout

    def collect(self):
        description = management.describe_model(self.management_port, timeout=self.timeout, model=self.model)
        up = GaugeMetricFamily(
            MANAGEMENT_UP, "1 when MMS's management API described the model at this scrape", labels=["model"]
        )
        up.add_metric([self.model], 0.0 if description is None else 1.0)
        yield up

        states = GaugeMetricFamily(
            WORKERS, "Workers of the model by state (MMS management API)", labels=["model", "state"]
        )
        counts = {state: 0 for state in ALWAYS_REPORTED}
        for worker in (description or {}).get("workers", []):
            state = str(worker.get("status", "UNKNOWN"))
            counts[state] = counts.get(state, 0) + 1
        for state, count in sorted(counts.items()):
            states.add_metric([self.model, state], count)
        yield states

        processes, restarts = self.snapshot_fresh()
        restarted = CounterMetricFamily(
            WORKER_RESTARTS,
            "Workers that came back with a new pid (killed, crashed) since the exporter started",
            labels=["model"],
        )
        restarted.add_metric([self.model], restarts)
        yield restarted

        rss = GaugeMetricFamily(
            WORKER_RSS, "Resident memory of each worker process (bytes)", labels=["model", "worker"]
        )
        for wid, process in sorted(processes.items()):
            try:
                rss.add_metric([self.model, wid], process.memory_info().rss)
            except psutil.Error:
                continue  # it ended between the poll and now
        yield rss

    def snapshot_fresh(self):
        self.tracker.poll()  # a scrape sees the workers of now, not of the last poll
        return self.tracker.snapshot()
