"""What the front door's metrics cost: wrk at c=64 through the front door
(HTTPS, token, retry logic) of one fleet, with its metrics on and off, in
alternating rounds (on off, off on, ...) so drift from other jobs on the
machine spreads over both:

  on   nginx writes the metrics log line per request, the exporter follows it
       and is scraped every second (which also probes the host)
  off  no metrics log line, no exporter (nginx's text access log stays in both)

Switching is a graceful reload (Fleet.set_metrics); before each 'on' run the
metrics log starts empty, and after it the bench waits until the exporter has
read all of it (its catch-up time is reported), so no run pays for another.
Also reported: nginx's and the exporter's CPU per request, and whether the
exporter counted every request wrk got an answer to.

    .venv/bin/python -m bench.front_metrics_cost                  # 6 rounds of 10 s (about 4 min)
    .venv/bin/python -m bench.front_metrics_cost --rounds 2 --duration 3   # a smoke run
"""

import argparse
import contextlib
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from bench import load_generator
from bench.machine import write_report
from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, PREDICT_PATH
from fizbuz.lifecycle import LifecycleError, free_ports, wait_until
from serving.front import tokens
from serving.front.fleet import Fleet, FleetError, Options
from serving.front.nginx import NginxError
from serving.front.metrics import control as front_control
from serving.front.metrics import log as front_log
from serving.mms.metrics.control import metrics_url
from bench.metrics_cost import Scraper
from serving.metrics.logtail import flushed_and_read
from serving.metrics.scrape import scrape
from fizbuz import logs

log = logging.getLogger("front-metrics-cost")
HERE = Path(__file__).resolve().parent
LABELS = {"on": "metrics on (log line + exporter, scraped every 1 s)", "off": "metrics off"}


def cpu_seconds(processes):
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except Exception:  # a process that just ended: nothing more to add
            continue
    return total


def counted_200(url):
    return scrape(url).total("fizbuz_front_requests_total", route="predict", status="200")


def lag(url):
    return scrape(url).total("fizbuz_front_log_lag_bytes")


def switch(fleet, name):
    if name == "on":
        front_control.stop(fleet.dir)
        (fleet.door.logs / front_log.LOG_NAME).unlink(missing_ok=True)  # each 'on' run starts from an empty log
    fleet.set_metrics(name == "on")


def one_run(args, fleet, state, name, url, headers, wrk_log):
    exporter = front_control.running(fleet.dir)
    metrics = metrics_url(state["metrics_port"])
    counted_before = counted_200(metrics) if exporter else 0
    workers = fleet.door.workers()
    watched = workers + ([exporter] if exporter else [])
    cpu_before = [cpu_seconds([p]) for p in watched]
    scraping = Scraper(metrics) if exporter else contextlib.nullcontext()
    with scraping:
        result = load_generator.run_wrk(
            url, args.connections, args.duration, args.wrk_threads, wrk_log, headers=headers
        )
    cpu = [cpu_seconds([p]) - before for p, before in zip(watched, cpu_before)]
    row = {
        "config": name,
        "req_per_s": result.good_per_second,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "requests": result.requests,
        "errors": result.errors,
        "load_avg_1m": os.getloadavg()[0],
        "nginx_cpu_us": sum(cpu[: len(workers)]) / max(1, result.requests) * 1e6,
    }
    if result.errors:
        raise LifecycleError(f"'{name}' had {result.errors} errors: {result.error_detail}")
    if exporter:
        row["lag_at_end_bytes"] = lag(metrics)
        started = time.monotonic()
        wait_until(
            flushed_and_read(fleet.door.logs / front_log.LOG_NAME, lambda: lag(metrics) == 0),
            120,
            "the exporter to catch up",
            interval=0.2,
        )
        row["catch_up_s"] = time.monotonic() - started
        row["exporter_cpu_us"] = (cpu_seconds([exporter]) - cpu_before[-1]) / max(1, result.requests) * 1e6
        row["counted"] = int(counted_200(metrics) - counted_before)
        row["log_bytes_per_request"] = (fleet.door.logs / front_log.LOG_NAME).stat().st_size / max(1, row["counted"])
        if scraping.failures:
            raise LifecycleError(f"{scraping.failures} of {scraping.scrapes} scrapes failed")
    return row


def measure(args, folder):
    fleet = Fleet(folder / "fleet")
    rows = []
    try:
        front_port, metrics_port = free_ports(2)
        state = fleet.start(
            Options(hosts=1, workers=args.workers, front_port=front_port, metrics_port=metrics_port, mar=args.mar)
        )
        url = f"https://{state['front']['listen']}{PREDICT_PATH}"
        headers = [f"Authorization: Bearer {tokens.read(fleet.token_file)['default']}"]
        wrk_log = folder / "wrk.log"
        for name in ("on", "off"):
            switch(fleet, name)
            load_generator.run_wrk(url, args.connections, args.warmup, args.wrk_threads, wrk_log, headers=headers)
        for round_number in range(1, args.rounds + 1):
            order = ("on", "off") if round_number % 2 else ("off", "on")
            for name in order:
                switch(fleet, name)
                row = one_run(args, fleet, state, name, url, headers, wrk_log)
                row["round"] = round_number
                rows.append(row)
                extra = (
                    f"  exporter {row['exporter_cpu_us']:.1f} µs/request, counted {row['counted']:,} of "
                    f"{row['requests']:,} answered, lag {row['lag_at_end_bytes'] / 1024:.0f} KiB at the end, "
                    f"caught up in {row['catch_up_s']:.1f} s"
                    if name == "on"
                    else ""
                )
                log.info(
                    "round %d  %-4s %8.0f req/s  p50 %.2f ms  p99 %.2f ms  nginx %.1f µs/request%s",
                    round_number,
                    name,
                    row["req_per_s"],
                    row["p50_ms"],
                    row["p99_ms"],
                    row["nginx_cpu_us"],
                    extra,
                )
    finally:
        fleet.stop()
    return rows


def report(args, rows):
    runs = {name: [r for r in rows if r["config"] == name] for name in LABELS}
    median = lambda name, key: statistics.median(r[key] for r in runs[name])
    lines = [
        f"# What the front door's metrics cost (wrk through the front door, c={args.connections})",
        "",
        f"One run of `python -m bench.front_metrics_cost`: {args.rounds} alternating rounds of "
        f"{args.duration} s per configuration, wrk with {args.wrk_threads} threads, one host with "
        f"{args.workers} MMS workers (shipped batching), nginx with the fleet's default workers. wrk, nginx, "
        "the exporter and MMS share the machine's cores with other people's jobs: compare the columns of "
        "one run, not figures across runs.",
        "",
        "| configuration | median req/s | rounds (req/s) | median p50 ms | median p99 ms | nginx CPU µs/request |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name in LABELS:
        rounds = ", ".join(f"{r['req_per_s']:,.0f}" for r in runs[name])
        lines.append(
            f"| {LABELS[name]} | {median(name, 'req_per_s'):,.0f} | {rounds} | {median(name, 'p50_ms'):.2f} | "
            f"{median(name, 'p99_ms'):.2f} | {median(name, 'nginx_cpu_us'):.1f} |"
        )
    ratios = [on["req_per_s"] / off["req_per_s"] - 1 for on, off in zip(runs["on"], runs["off"])]
    lines += [
        "",
        f"Paired within each round, 'on' vs 'off': median **{statistics.median(ratios):+.1%}** "
        f"(rounds: {', '.join(f'{r:+.1%}' for r in ratios)}); medians of the columns: "
        f"{median('on', 'req_per_s') / median('off', 'req_per_s') - 1:+.1%}.",
        "",
        "The exporter in the 'on' runs (it runs niced, so under full load it may fall behind and catch up "
        "after). It counts a few more 200s than wrk reports: wrk stops with up to c requests in flight, "
        "which nginx still answers and logs.",
        "",
        "| round | exporter CPU µs/request | counted / answered by wrk | lag at the end of the run | "
        "catch-up after | log bytes/request |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs["on"]:
        lines.append(
            f"| {r['round']} | {r['exporter_cpu_us']:.1f} | {r['counted']:,} / {r['requests']:,} | "
            f"{r['lag_at_end_bytes'] / 1024:,.0f} KiB | {r['catch_up_s']:.1f} s | "
            f"{r['log_bytes_per_request']:.0f} |"
        )
    return write_report(lines, args.output, args.load_before)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rounds", type=int, default=6, help="an even number gives each slot to each (default %(default)s)"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per run (default %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed seconds per configuration first (default %(default)s)"
    )
    parser.add_argument("--connections", type=int, default=64, help="default %(default)s")
    parser.add_argument("--wrk-threads", type=int, default=2, help="default %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="MMS workers on the host (default %(default)s)")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", default=str(HERE / "results" / "metrics" / "front_cost.md"))
    return parser.parse_args(argv)


def main(argv=None):
    logs.setup("progress")
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]
    rows = load_generator.measure_in_temp(
        "front_cost", "fbz-fcost-", lambda folder: measure(args, folder), (LifecycleError, FleetError, NginxError)
    )
    if rows is None:
        return 1
    print(report(args, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
