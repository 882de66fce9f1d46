"""The front door's metrics exporter: Prometheus text on http://ADDRESS:PORT/metrics.

It follows the metrics log nginx writes (serving.front.metrics.log, from the
start of the current file, so a restarted exporter loses no count), counts
requests, retries, upstream tries and failures, and at scrape time probes each
host behind the front door (serving.front.metrics.hosts). Started and stopped
with the front door by the fleet (serving.front.metrics.control).

It runs niced: under full load it may fall behind (fizbuz_front_log_lag_bytes
shows by how much) and catch up later, but never takes a core from serving.
nginx does not wait for it either: it only appends to a file.

    python -m serving.front.metrics.exporter --port 9113 --log run/fleet/front/logs/metrics.log \
        --state-file run/fleet/fleet.json --nginx-pid-file run/fleet/front/nginx.pid
"""

import argparse
import logging
import os
import signal
import sys
import threading

from prometheus_client import CollectorRegistry

from fizbuz.lifecycle import PidFile
from serving.front.metrics.hosts import HostProbe
from serving.front.metrics.log import FrontCounts, tail_families
from serving.metrics.logtail import LogTail
from serving.metrics.serve import serve_until_signalled
from fizbuz import logs

log = logging.getLogger("front-metrics-exporter")


class FrontCollector:
    def __init__(self, counts, tail, tail_lock, probe):
        self.counts, self.tail, self.tail_lock, self.probe = counts, tail, tail_lock, probe

    def collect(self):
        families = self.counts.families()
        with self.tail_lock:
            families += tail_families(self.tail)
        if self.probe is not None:
            families += self.probe.families()
        return families


class Follower:
    """Reads the log into the counts; rotates it when it grows past `rotate_bytes`."""

    def __init__(self, tail, counts, nginx_pid_file=None, rotate_bytes=0):
        self.tail, self.counts = tail, counts
        self.lock = threading.Lock()
        self.nginx = PidFile(nginx_pid_file, "nginx") if nginx_pid_file else None
        self.rotate_bytes = rotate_bytes

    def step(self):
        """Read what is new; True when there was something."""
        with self.lock:
            lines = self.tail.read_lines()
            if not lines:
                self.maybe_rotate()
                return False
        self.counts.add_lines(lines)
        return True

    def maybe_rotate(self):
        """Rename the log to LOG.1 and have nginx reopen it (USR1); the tail
        finishes the old file first (also when it is behind). Not while an
        earlier rotation is still being finished."""
        if not self.rotate_bytes or self.nginx is None or self.tail.size() < self.rotate_bytes:
            return
        master = self.nginx.process()
        try:
            if master is None or os.stat(self.tail.path).st_ino != self.tail.inode:
                return
            os.replace(self.tail.path, self.tail.path + ".1")
            master.send_signal(signal.SIGUSR1)
            log.info(
                "rotated %s (%d bytes) and asked nginx (pid %d) to reopen it",
                self.tail.path,
                self.tail.size(),
                master.pid,
            )
        except (OSError, ProcessLookupError) as error:
            log.warning("could not rotate %s: %s", self.tail.path, error)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1", help="default: %(default)s (loopback only)")
    parser.add_argument("--log", required=True, help="the metrics log nginx writes")
    parser.add_argument("--state-file", help="the fleet's state file (hosts to probe); none: no host_up")
    parser.add_argument("--nginx-pid-file", help="to ask nginx to reopen the log after a rotation")
    parser.add_argument(
        "--rotate-bytes",
        type=int,
        default=64 << 20,
        help="rotate the log (to LOG.1) past this size; 0: never (default %(default)s)",
    )
    parser.add_argument("--probe-timeout", type=float, default=0.5, help="seconds per host probe (default %(default)s)")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.2,
        help="seconds between looks at the log when nothing is new (default %(default)s)",
    )
    parser.add_argument("--nice", type=int, default=10, help="added niceness (default %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logs.setup("server")
    if args.nice:
        os.nice(args.nice)  # serving first: this process may lag, never the requests
    counts = FrontCounts()
    follower = Follower(LogTail(args.log), counts, args.nginx_pid_file, args.rotate_bytes)
    probe = HostProbe(args.state_file, timeout=args.probe_timeout) if args.state_file else None
    registry = CollectorRegistry()
    registry.register(FrontCollector(counts, follower.tail, follower.lock, probe))
    try:
        serve_until_signalled(registry, args.address, args.port, follower.step, args.poll_interval, log, args.log)
    finally:
        if probe is not None:
            probe.close()
        follower.tail.close()
        log.info("stopped after %d lines", counts.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
