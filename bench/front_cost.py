#!/usr/bin/env python3
"""The front door's cost: wrk at c = 1/16/64 through the fleet's nginx (HTTPS,
token, retry logic) and straight to the one MMS behind it, same box, same run.

Starts its own one-host fleet (network namespace, free ports, temp folder) and
stops it at the end. Goal from issue 11: at most 15% fewer req/s at c=64 and at
most 0.3 ms more p50 at c=1. Writes bench/results/front/cost.{json,md}.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.load_generator import LoadError, ensure_tools, run_wrk
from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, PREDICT_PATH
from fizbuz.lifecycle import free_ports
from serving.front import tokens
from serving.front.fleet import Fleet, Options

HERE = Path(__file__).resolve().parent


def wrk(url, connections, seconds, log_file, headers=()):
    try:
        result = run_wrk(url, connections, seconds, threads=2, log_file=log_file, headers=headers)
    except LoadError as error:
        raise SystemExit(str(error))
    return {
        "req_per_s": round(result.good_per_second, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "errors": result.errors,
        "requests": result.requests,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per point (default: 10)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=2, help="runs per point, interleaved (default: 2)")
    parser.add_argument("--workers", type=int, default=2, help="MMS workers on the host (default: 2)")
    parser.add_argument("--nginx-workers", default=None, help="default: the fleet's (1)")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", default=str(HERE / "results" / "front"))
    args = parser.parse_args(argv)
    ensure_tools()
    directory = Path(tempfile.mkdtemp(prefix="fbz-bench-"))
    wrk_log = directory / "wrk.log"  # wrk's raw output; a failed run's message is in LoadError
    fleet = Fleet(directory)
    rows = []
    try:
        front_port, metrics_port = free_ports(2)
        state = fleet.start(
            Options(
                hosts=1,
                workers=args.workers,
                front_port=front_port,
                metrics_port=metrics_port,
                mar=args.mar,
                nginx_workers=args.nginx_workers,
            )
        )
        args.nginx_workers = state["front"]["workers"]
        host = fleet.hosts(state)[0]
        token = tokens.read(fleet.token_file)["default"]
        targets = {
            "front door (HTTPS, token)": (
                f"https://{state['front']['listen']}{PREDICT_PATH}",
                [f"Authorization: Bearer {token}"],
            ),
            "straight to MMS (HTTP)": (f"http://{host.upstream}{PREDICT_PATH}", []),
        }
        for url, headers in targets.values():
            wrk(url, max(args.concurrency), 5, wrk_log, headers)  # warm-up
        # Interleaved (front, straight, front, ...) so drift in a shared machine's load hits both alike.
        for connections in args.concurrency:
            for repeat in range(args.repeats):
                for name, (url, headers) in targets.items():
                    cpu_before = fleet.door.workers_cpu_seconds()
                    row = {
                        "target": name,
                        "concurrency": connections,
                        "repeat": repeat,
                        "load_avg_1m": os.getloadavg()[0],
                        **wrk(url, connections, args.duration, wrk_log, headers),
                    }
                    if name.startswith("front"):
                        # What nginx itself burns per request: a figure the shared machine does not skew much.
                        row["nginx_cpu_us_per_request"] = round(
                            (fleet.door.workers_cpu_seconds() - cpu_before) / max(1, row["requests"]) * 1e6, 1
                        )
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        fleet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    write(rows, Path(args.output), args)
    return 0


def write(rows, output, args):
    output.mkdir(parents=True, exist_ok=True)
    (output / "cost.json").write_text(json.dumps(rows, indent=2))

    def mean(target, c, key):
        values = [r[key] for r in rows if r["target"] == target and r["concurrency"] == c]
        return sum(values) / len(values)

    front, straight = "front door (HTTPS, token)", "straight to MMS (HTTP)"
    loads = [r["load_avg_1m"] for r in rows]
    lines = [
        f"# Front door cost ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"wrk, {args.duration} s per point, mean of {args.repeats} interleaved runs, one host (namespace) with "
        f"{args.workers} MMS workers, nginx with {args.nginx_workers} worker(s); nginx, wrk and MMS on the "
        "same 2 cores, which other jobs shared "
        f"(1-minute load average {min(loads):.1f}..{max(loads):.1f}).",
        "",
        "| c | straight req/s | front req/s | req/s change | straight p50 ms | front p50 ms | p50 added ms | "
        "front p99 ms | nginx CPU µs/request | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in args.concurrency:
        s_rps, f_rps = mean(straight, c, "req_per_s"), mean(front, c, "req_per_s")
        s_p50, f_p50 = mean(straight, c, "p50_ms"), mean(front, c, "p50_ms")
        errors = sum(r["errors"] for r in rows if r["concurrency"] == c)
        lines.append(
            f"| {c} | {s_rps:,.0f} | {f_rps:,.0f} | {(f_rps - s_rps) / s_rps * 100:+.1f}% | {s_p50:.2f} | "
            f"{f_p50:.2f} | {f_p50 - s_p50:+.2f} | {mean(front, c, 'p99_ms'):.2f} | "
            f"{mean(front, c, 'nginx_cpu_us_per_request'):.0f} | {errors} |"
        )
    (output / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
