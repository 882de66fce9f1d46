"""The metrics exporter of one MMS: Prometheus text on http://ADDRESS:PORT/metrics.

It sums the handler's counters and histograms from the workers' multiprocess
files (serving.mms.metrics.multiproc) and adds what only the outside can see
(serving.mms.metrics.workers). Started and stopped with the server by
serving/mms/cli.py (serving.mms.metrics.control); serving never waits on it.

    python -m serving.mms.metrics.exporter --port 8082 --multiproc-dir run/prometheus \
        --run-dir run --management-port 8081
"""

import argparse
import logging
import sys

import psutil
from prometheus_client import CollectorRegistry

from serving.mms.metrics.multiproc import FilesCollector
from serving.metrics.serve import serve_until_signalled
from serving.mms.metrics.workers import WorkerCollector, WorkerTracker
from serving.mms.process import RunFolder
from fizbuz import logs

log = logging.getLogger("metrics-exporter")


def build_registry(multiproc_dir, run_dir, management_port):
    files = FilesCollector(multiproc_dir)
    tracker = WorkerTracker(RunFolder(run_dir), on_change=files.fold_dead)
    registry = CollectorRegistry()
    registry.register(files)
    registry.register(WorkerCollector(tracker, management_port))
    return registry, files, tracker


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1", help="default: %(default)s (loopback only)")
    parser.add_argument("--multiproc-dir", required=True, help="the workers' PROMETHEUS_MULTIPROC_DIR")
    parser.add_argument("--run-dir", required=True, help="the MMS run folder (to find its workers)")
    parser.add_argument("--management-port", type=int, required=True)
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between worker checks (restarts, dead workers' files; default %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logs.setup("server")
    registry, files, tracker = build_registry(args.multiproc_dir, args.run_dir, args.management_port)

    def step():
        try:
            tracker.poll()
            files.fold_dead()
        except (OSError, psutil.Error) as error:  # a worker or file vanished mid-look: next round
            log.warning("worker check failed: %s", error)
        return False  # the worker check runs once per poll interval

    serve_until_signalled(registry, args.address, args.port, step, args.poll_interval, log, args.multiproc_dir)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
