"""Draw what the metrics show during a short load with one worker killed in the
middle: a private MMS (metrics on) and a private Prometheus scraping its
exporter every 0.5 s, answer-checking load from loadtest.loadgen, kill -9 of
one worker at --kill-at, then one PNG from Prometheus's query_range API:
req/s, handler p50/p99, mean batch size, workers READY, the kill marked.

    .venv/bin/python -m bench.metrics_picture                      # docs/metrics_under_kill.png
    .venv/bin/python -m bench.metrics_picture --duration 20 --concurrency 64 --output /tmp/k.png
"""

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

from fizbuz.contract import ROOT  # noqa: E402
from fizbuz.lifecycle import LifecycleError, wait_until  # noqa: E402
from loadtest.background import BackgroundLoad  # noqa: E402
from serving.metrics.prometheus import PrivatePrometheus  # noqa: E402
from serving.mms.private import PrivateMms  # noqa: E402
from fizbuz import logs

log = logging.getLogger("picture")

SCRAPE = "500ms"
STEP = 0.5
WINDOW = "2s"  # rate() needs a few scrapes in its window
QUERIES = {
    "req_per_s": f'sum(rate(fizbuz_requests_total{{status="2xx"}}[{WINDOW}]))',
    "p50_ms": f"1000 * histogram_quantile(0.50, sum by (le) (rate(fizbuz_handler_seconds_bucket[{WINDOW}])))",
    "p99_ms": f"1000 * histogram_quantile(0.99, sum by (le) (rate(fizbuz_handler_seconds_bucket[{WINDOW}])))",
    "mean_batch": f"sum(rate(fizbuz_batch_size_sum[{WINDOW}])) / sum(rate(fizbuz_batch_size_count[{WINDOW}]))",
    "ready": 'sum(fizbuz_workers{state="READY"})',
    "processes": "count(fizbuz_worker_resident_memory_bytes)",
    "restarts": "sum(fizbuz_worker_restarts_total)",
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=24.0, help="seconds of load (default %(default)s)")
    parser.add_argument("--kill-at", type=float, default=None, help="seconds into the load (default: the middle)")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="default %(default)s")
    parser.add_argument("--output", default=str(ROOT / "docs" / "metrics_under_kill.png"))
    return parser.parse_args(argv)


def series(prometheus, origin, start, end):
    """{name: ([seconds since origin], [values])} for every query over [start, end]."""
    found = {}
    for name, promql in QUERIES.items():
        result = prometheus.query_range(promql, start, end, STEP)
        points = next(iter(result.values()), [])
        found[name] = ([t - origin for t, _ in points], [v for _, v in points])
    return found


def draw(data, kill_at, summary, settings, output):
    figure, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    panels = [
        (axes[0], [("req_per_s", "answered 2xx req/s", "tab:blue")], "req/s"),
        (axes[1], [("p50_ms", "p50", "tab:green"), ("p99_ms", "p99", "tab:red")], "handler time per batch (ms, log)"),
        (axes[2], [("mean_batch", "mean batch size", "tab:purple")], "requests per batch"),
        (
            axes[3],
            [
                ("ready", "workers READY (management API)", "tab:blue"),
                ("processes", "worker processes alive", "tab:orange"),
                ("restarts", "worker restarts (total)", "tab:red"),
            ],
            "workers",
        ),
    ]
    for axis, lines, label in panels:
        for key, name, colour in lines:
            xs, ys = data[key]
            axis.plot(xs, ys, label=name, color=colour, drawstyle="steps-post" if axis is axes[3] else "default")
        axis.axvline(kill_at, color="black", linestyle="--", linewidth=1)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left", fontsize=8)
        if axis is axes[1]:
            axis.set_yscale("log")  # one stalled batch must not flatten the rest
        else:
            axis.set_ylim(bottom=0)
    axes[0].annotate(
        "kill -9 one worker",
        xy=(kill_at, axes[0].get_ylim()[1] * 0.95),
        xytext=(6, 0),
        textcoords="offset points",
        fontsize=9,
        va="top",
    )
    axes[3].set_xlabel("seconds since the load started")
    failed = summary["answered"] - summary["statuses"].get(200, 0)
    failures = ", ".join(f"{count} × {status}" for status, count in summary["failed_statuses"].items())
    figure.suptitle(
        f"MMS ({settings}), answer-checking load at c={summary['concurrency']}\n"
        f"Prometheus scraping the exporter every {SCRAPE}, rates over {WINDOW}\n"
        f"client side: {summary['answered']:,} answered, {failed} failed"
        f"{f' ({failures}, the killed worker’s batch)' if failed else ''}, {summary['wrong_answers']} wrong",
        fontsize=10,
    )
    figure.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)


def run(args):
    kill_at = args.kill_at if args.kill_at is not None else args.duration / 2
    with PrivateMms() as mms, PrivatePrometheus([f"127.0.0.1:{mms.metrics_port}"], interval=SCRAPE) as prometheus:
        wait_until(prometheus.targets_up, 60, "Prometheus to scrape the exporter")
        settings = (
            f"batch_size {mms.describe().get('batchSize')}, "
            f"{len(mms.ready_workers())} workers, max_batch_delay {mms.describe().get('maxBatchDelay')} ms"
        )
        log.info("load: c=%d for %.0f s, killing one worker at %.0f s", args.concurrency, args.duration, kill_at)
        started = time.time()
        load = BackgroundLoad(mms.inference_port, args.concurrency, args.duration).start()
        time.sleep(kill_at)  # the moment of the fault, chosen by the caller (not a readiness wait)
        victim_id, victim = sorted(mms.workers().items())[0]
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.time()
        log.info("killed worker %s (pid %d)", victim_id, victim.pid)
        summary = load.join()
        ended = time.time()
        # Until Prometheus has scraped past the end of the load.
        wait_until(
            lambda: (prometheus.value("max(timestamp(fizbuz_management_api_up))") or 0) > ended + 1,
            30,
            "a scrape after the load",
        )
        data = series(prometheus, started, started - 2, ended + 2)
    summary = dict(
        summary,
        concurrency=args.concurrency,
        failed_statuses={k: v for k, v in summary["statuses"].items() if k != 200},
    )
    draw(data, killed - started, summary, settings, args.output)
    return summary


def main(argv=None):
    logs.setup("progress")
    args = parse_args(argv)
    try:
        summary = run(args)
    except LifecycleError as error:
        print(f"picture: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    log.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
