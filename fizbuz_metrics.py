"""The handler's Prometheus metrics, recorded inside each MMS worker.

Ships flat in the .mar beside fizbuz_service.py (standard library and
prometheus_client only; never the `fizbuz` package). Recording is on when the
worker's environment names a PROMETHEUS_MULTIPROC_DIR (serving/mms/cli.py sets
one per run folder): prometheus_client's multiprocess mode then keeps every
value in this worker's own memory-mapped files there, and the exporter
(serving/mms/metrics/exporter.py) reads and sums all workers' files when scraped.
A batch only writes to this process's memory: no socket, no lock shared with
another process, so a slow or dead exporter cannot slow or stop serving.

The names are defined here once; the exporter's README lists them.
"""

import logging
import os

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# "1": also write MMS's per-batch metric lines (PreprocessTime, InferenceTime,
# PostprocessTime, BatchSize) to model_metrics.log, as before Prometheus; "0":
# don't. Unset (a plain MMS, not started by serving/mms/cli.py): "1".
LOG_LINES_ENV = "FIZBUZ_MODEL_METRICS_LOG"

REQUESTS = "fizbuz_requests"  # counter: fizbuz_requests_total{model, status}
HANDLER_SECONDS = "fizbuz_handler_seconds"  # histogram, one observation per batch
STAGE_SECONDS = "fizbuz_handler_stage_seconds"  # histogram{stage}, one per stage per batch
BATCH_SIZE = "fizbuz_batch_size"  # histogram of requests per batch
STAGES = ("preprocess", "inference", "postprocess")
STATUS_CLASSES = ("2xx", "4xx", "5xx")

# A batch takes tens of microseconds to a few milliseconds here; the upper
# buckets catch a stalled worker.
HANDLER_BUCKETS = (25e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 0.1, 1.0)
STAGE_BUCKETS = (5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 0.1)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64, 128, 256)


def log_lines_wanted(environ=os.environ):
    return environ.get(LOG_LINES_ENV, "1") not in ("0", "false", "")


class NoMetrics:
    """What a worker records when metrics are off: nothing."""

    enabled = False

    def record_batch(self, good, bad, stage_seconds, handler_seconds):
        pass

    def record_failure(self, size):
        pass


class HandlerMetrics:
    """This worker's counters and histograms, with every label child bound up
    front so a batch pays no label lookups."""

    enabled = True

    def __init__(self, model):
        # Imported here: multiprocess mode is chosen at import time from the
        # environment, and a worker with metrics off never needs the package.
        from prometheus_client import Counter, Histogram

        requests = Counter(
            REQUESTS, "Requests answered by the handler, by status class", ["model", "status"], registry=None
        )
        self._status = {status: requests.labels(model, status) for status in STATUS_CLASSES}
        self._handler = Histogram(
            HANDLER_SECONDS,
            "Time the handler took per batch (seconds)",
            ["model"],
            buckets=HANDLER_BUCKETS,
            registry=None,
        ).labels(model)
        stages = Histogram(
            STAGE_SECONDS,
            "Time of each handler stage per batch (seconds)",
            ["model", "stage"],
            buckets=STAGE_BUCKETS,
            registry=None,
        )
        self._stages = [stages.labels(model, stage) for stage in STAGES]
        self._batch = Histogram(
            BATCH_SIZE, "Requests per batch handed to the handler", ["model"], buckets=BATCH_BUCKETS, registry=None
        ).labels(model)

    def record_batch(self, good, bad, stage_seconds, handler_seconds):
        """One answered batch: `good` 200s, `bad` 400s, the three stage times and the total."""
        if good:
            self._status["2xx"].inc(good)
        if bad:
            self._status["4xx"].inc(bad)
        for histogram, seconds in zip(self._stages, stage_seconds):
            histogram.observe(seconds)
        self._handler.observe(handler_seconds)
        self._batch.observe(good + bad)

    def record_failure(self, size):
        """A batch the handler answered with 500s (a fault, not bad input)."""
        self._status["5xx"].inc(size)
        self._batch.observe(size)


def for_worker(model, environ=os.environ):
    """HandlerMetrics when this worker has a multiprocess folder to write to,
    NoMetrics otherwise (also, with a warning, when that folder is unusable:
    serving goes on without metrics rather than failing the model's load)."""
    folder = environ.get(MULTIPROC_ENV)
    if not folder:
        return NoMetrics()
    try:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} is not a folder")
        return HandlerMetrics(model)
    except (ImportError, OSError) as error:
        log.warning("Prometheus metrics are off for this worker: %s", error)
        return NoMetrics()
