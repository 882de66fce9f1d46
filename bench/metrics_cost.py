"""What metrics cost: wrk at c=64 against three MMS configurations side by side,
in one run, in alternating rounds (A B C, B C A, C A B ...) so drift from other
jobs on the machine spreads over all three:

  on         the new default: handler counters in multiprocess files, the
             exporter running and scraped every second (Prometheus-like)
  log-lines  before the exporter (FIZBUZ_METRICS=0): the handler's four per-batch
             lines in model_metrics.log
  off        FIZBUZ_METRICS=0 FIZBUZ_MODEL_METRICS_LOG=0: neither (since issue 25 MMS's own
             PredictionTime line goes with FIZBUZ_MODEL_METRICS_LOG too: on in log-lines only)

All three run shipped batching (batch 16, delay 1 ms, 2 workers) and are started
up front, so only the loaded one works. Prints a table and writes
bench/results/metrics/cost.md.

    .venv/bin/python -m bench.metrics_cost                 # 6 rounds of 8 s (about 5 min)
    .venv/bin/python -m bench.metrics_cost --rounds 1 --duration 3   # a smoke run
"""

import argparse
import contextlib
import logging
import os
import statistics
import sys
import threading
from pathlib import Path

from bench import load_generator
from bench.machine import write_report
from fizbuz.http_client import call
from fizbuz.lifecycle import LifecycleError
from serving.mms.private import PrivateMms
from fizbuz import logs

log = logging.getLogger("metrics-cost")

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "on": ({}, True),
    "log-lines": ({"metrics": 0}, False),
    "off": ({"metrics": 0, "model_metrics_log": 0}, False),
}
LABELS = {
    "on": "metrics on (new default; exporter scraped every 1 s)",
    "log-lines": "metrics by log lines (before; FIZBUZ_METRICS=0)",
    "off": "metrics off (FIZBUZ_METRICS=0 FIZBUZ_MODEL_METRICS_LOG=0)",
}


class Scraper:
    """GET /metrics every `interval` seconds in a thread, as Prometheus would."""

    def __init__(self, url, interval=1.0):
        self.url, self.interval = url, interval
        self.stopping = threading.Event()
        self.failures = self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.wait(self.interval):
            self.scrapes += 1
            if call("GET", self.url, 5)[0] != 200:
                self.failures += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(10)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rounds",
        type=int,
        default=6,
        help="a multiple of 3 gives each configuration each slot equally (default %(default)s)",
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per point (default %(default)s)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="untimed seconds per server first: the Java frontend needs them to warm up (default %(default)s)",
    )
    parser.add_argument("--connections", type=int, default=64, help="default %(default)s")
    parser.add_argument("--wrk-threads", type=int, default=2, help="default %(default)s")
    parser.add_argument("--output", default=str(HERE / "results" / "metrics" / "cost.md"))
    return parser.parse_args(argv)


def measure(args, folder):
    results = {name: [] for name in CONFIGS}
    wrk_log = folder / "wrk.log"
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, (settings, _scraped) in CONFIGS.items():
            log.info("starting MMS '%s'", name)
            server = PrivateMms(**settings)
            stack.callback(server.remove)
            stack.callback(server.stop)
            server.start()
            servers[name] = server
        for server in servers.values():
            load_generator.run_wrk(server.url, args.connections, args.warmup, args.wrk_threads, wrk_log)
        names = list(servers)
        for round_number in range(1, args.rounds + 1):
            shift = (round_number - 1) % len(names)  # each configuration takes each slot in turn
            for name in names[shift:] + names[:shift]:
                server = servers[name]
                scraping = Scraper(server.metrics_url) if CONFIGS[name][1] else contextlib.nullcontext()
                with scraping:
                    result = load_generator.run_wrk(
                        server.url, args.connections, args.duration, args.wrk_threads, wrk_log
                    )
                if CONFIGS[name][1] and scraping.failures:
                    raise LifecycleError(f"{scraping.failures} of {scraping.scrapes} scrapes failed")
                if result.errors:
                    raise LifecycleError(f"'{name}' had {result.errors} errors: {result.error_detail}")
                log.info(
                    "round %d  %-10s %8.0f req/s  p99 %.2f ms",
                    round_number,
                    name,
                    result.good_per_second,
                    result.p99_ms,
                )
                results[name].append(result)
    return results


def report(args, results):
    medians = {name: statistics.median(r.good_per_second for r in runs) for name, runs in results.items()}
    lines = [
        "# What metrics cost (wrk, c=%d)" % args.connections,
        "",
        f"One run of `python -m bench.metrics_cost`: {args.rounds} alternating rounds of {args.duration} s "
        f"per configuration, wrk with {args.wrk_threads} threads, shipped batching (batch 16, delay 1 ms, "
        "2 workers). The machine was shared with other jobs: compare the columns of one run, not "
        "figures across runs.",
        "",
        "| configuration | median req/s | rounds (req/s) | median p99 ms | vs off | vs log lines |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, runs in results.items():
        rounds = ", ".join(f"{r.good_per_second:,.0f}" for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        lines.append(
            f"| {LABELS[name]} | {medians[name]:,.0f} | {rounds} | {p99:.2f} | "
            f"{medians[name] / medians['off'] - 1:+.1%} | {medians[name] / medians['log-lines'] - 1:+.1%} |"
        )
    # Load from other jobs moves whole rounds; a ratio inside one round cancels most of it.
    lines += [
        "",
        "Paired within each round (the configurations ran back to back), 'on' relative to the others:",
        "",
        "| 'on' vs | median of the round ratios | each round |",
        "|---|---:|---|",
    ]
    for other in ("off", "log-lines"):
        ratios = [on.good_per_second / them.good_per_second - 1 for on, them in zip(results["on"], results[other])]
        lines.append(
            f"| {other} | {statistics.median(ratios):+.1%} | " + ", ".join(f"{ratio:+.1%}" for ratio in ratios) + " |"
        )
    return write_report(lines, args.output, args.load_before)


def main(argv=None):
    logs.setup("progress")
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]
    results = load_generator.measure_in_temp(
        "cost", "fbz-cost-", lambda folder: measure(args, folder), (LifecycleError,)
    )
    if results is None:
        return 1
    print(report(args, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
