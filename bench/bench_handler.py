#!/usr/bin/env python3
"""Micro-benchmark: the MMS handler's own cost per request, inside one worker.

Calls fizbuz_service.MXNetModelService.handle the way an MMS 1.0.8 worker does
(MMS's own Context and metrics objects, built as fizbuz/handler_harness.py builds
them, raw request bytes as with decode_input_request=false) on the model
unpacked from a .mar built by ./build_mar.sh (the handler is the project's
fizbuz_service.py, the file the archive carries). Only handle() is timed;
MMS's socket and frontend work is not. Prints a table of µs per request.

Examples:
  .venv/bin/python bench/bench_handler.py                  # builds a .mar in a temp folder
  .venv/bin/python bench/bench_handler.py --mar model_store/fizbuz_package.mar --seconds 1
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fizbuz import archive
from fizbuz.contract import INPUT_KEY
from fizbuz.handler_harness import batch_context, load_context, load_service, raw_request

# As in an MMS worker: one OpenMP thread. Must be set before mxnet loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# (registered batch size, requests per call): batch 1, a lone request in a
# batch-8 worker (padded), and full batches.
CASES = [(1, 1), (8, 1), (8, 8), (16, 16)]
STAGES = ("PreprocessTime", "InferenceTime", "PostprocessTime")


def build_mar(folder, log_file):
    print(f"==> building the .mar with ./build_mar.sh (log {log_file})", flush=True)
    try:
        return archive.build(folder / "model_store", log_file)
    except archive.BuildError as error:
        sys.exit(f"bench_handler.py: {error}")


def one_round(service, context, batches, size, seconds):
    """handle() call times (s) and per-stage metric values (ms) for `seconds`."""
    calls, stages = [], {name: [] for name in STAGES}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(calls) < 100:
        batch_context(context, size)  # MMS's per-batch set-up: not the handler's cost
        started = time.perf_counter()
        replies = service.handle(batches[len(calls) % len(batches)], context)
        calls.append(time.perf_counter() - started)
        if len(replies) != size:
            raise RuntimeError(f"handle returned {len(replies)} replies for {size} requests")
        for metric in context.metrics.store:
            if metric.name in stages:
                stages[metric.name].append(float(metric.value))
    return calls, stages


def measure(model_dir, bound, size, seconds, rounds):
    """Figures for `size` requests per call, from the quietest of `rounds`
    rounds (lowest median): other processes on the machine only add time."""
    service = load_service(model_dir, bound)
    context = load_context(model_dir, bound)
    batches = [[raw_request({INPUT_KEY: (start + i) % 1023}) for i in range(size)] for start in range(0, 1023, 7)]
    results = [one_round(service, context, batches, size, seconds / rounds) for _ in range(rounds)]
    medians = [statistics.median(calls) for calls, _ in results]
    calls, stages = results[medians.index(min(medians))]
    per_call = min(medians) * 1e6
    return {
        "bound": bound,
        "size": size,
        "calls": sum(len(c) for c, _ in results),
        "per_call_us": per_call,
        "per_request_us": per_call / size,
        "spread_us": (max(medians) - min(medians)) * 1e6,
        "p99_call_us": statistics.quantiles(calls, n=100)[98] * 1e6,
        **{name: statistics.median(values) * 1000 for name, values in stages.items()},
    }


def markdown(results, engine):
    lines = [
        "| registered batch | requests per call | calls | µs per call (median) | rounds' spread µs | "
        "p99 µs per call | **µs per request** | preprocess µs | inference µs | postprocess µs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['bound']} | {r['size']} | {r['calls']} | {r['per_call_us']:.1f} | "
            f"{r['spread_us']:.1f} | {r['p99_call_us']:.1f} | **{r['per_request_us']:.1f}** | "
            f"{r['PreprocessTime']:.0f} | {r['InferenceTime']:.0f} | {r['PostprocessTime']:.0f} |"
        )
    lines.append("")
    lines.append(
        "Figures from the quietest of several rounds (lowest median call time); the spread is the "
        "highest minus the lowest round median, a gauge of interference from other processes. "
        "Stage times are medians of the handler's own metrics (1 µs resolution); µs per request = "
        "median call time / requests per call. OMP_NUM_THREADS=1 as in an MMS worker; "
        f"MXNet engine: {engine}."
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mar", type=Path, help="a built fizbuz_package.mar (default: build one in a temp folder)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per case (default: 2)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case; the quietest counts (default: 5)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--mxnet-engine",
        metavar="NAME",
        help="set MXNET_ENGINE_TYPE, e.g. ThreadedEnginePerDevice (default: the handler's own choice, NaiveEngine)",
    )
    args = parser.parse_args()
    if args.mxnet_engine:
        os.environ["MXNET_ENGINE_TYPE"] = args.mxnet_engine  # read when mxnet is imported, below

    with tempfile.TemporaryDirectory(prefix="fbz-handler-") as folder:
        folder = Path(folder)
        mar = args.mar or build_mar(folder, folder / "build_mar.log")
        if not mar.is_file():
            sys.exit(f"bench_handler.py: {mar} does not exist: build it with ./build_mar.sh")
        model_dir = archive.unpack(mar, folder / "model")
        results = []
        for bound, size in CASES:
            print(f"==> handle() with {size} request(s), registered batch size {bound}, {args.seconds:g} s", flush=True)
            results.append(measure(model_dir, bound, size, args.seconds, max(args.rounds, 1)))
    # fizbuz_service sets NaiveEngine unless MXNET_ENGINE_TYPE says otherwise.
    table = markdown(results, os.environ.get("MXNET_ENGINE_TYPE", "NaiveEngine"))
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
