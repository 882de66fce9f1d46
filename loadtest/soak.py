"""Soak a private MMS: a long answer-checking load at high concurrency, with
worker memory (RSS) sampled before and after.

Example: python -m loadtest.soak --duration 600 --concurrency 64   (the 10-minute soak)
Prints a JSON report; exits non-zero on any error, wrong answer, or RSS growth
above --max-rss-growth-mb per worker.
"""

import argparse
import asyncio
import json
import sys

from loadtest import loadgen
from serving.mms.private import PrivateMms


def worker_rss_mb(server):
    return {wid: round(process.memory_info().rss / 2**20, 1) for wid, process in sorted(server.workers().items())}


def soak(server, duration, concurrency, warmup=5.0):
    # Warm up first so start-up allocations (MXNet's, the allocator's) are not counted as growth.
    asyncio.run(loadgen.run_load(server.inference_port, concurrency, duration=warmup))
    before = worker_rss_mb(server)
    result = asyncio.run(loadgen.run_load(server.inference_port, concurrency, duration=duration))
    after = worker_rss_mb(server)
    report = result.summary()
    report.update(
        duration_s=duration,
        concurrency=concurrency,
        rss_start_mb=before,
        rss_end_mb=after,
        rss_growth_mb={w: round(after[w] - before[w], 1) for w in before if w in after},
        workers_replaced=sorted(set(before) ^ set(after)),
    )
    return report, result


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--max-rss-growth-mb", type=float, default=10.0, help="default: %(default)s")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with PrivateMms() as server:
        report, result = soak(server, args.duration, args.concurrency)
    print(json.dumps(report, indent=2))
    grew = [w for w, growth in report["rss_growth_mb"].items() if growth > args.max_rss_growth_mb]
    healthy = not (result.failures or result.wrong or result.transport_errors or grew or report["workers_replaced"])
    print("soak: " + ("PASS" if healthy else "FAIL"), file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
