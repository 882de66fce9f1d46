"""MMS's own per-request path, before and after issue 25, side by side in one run.

Three private MMS servers, all with the shipped batching (batch 16, delay 1 ms, 2
workers) and metrics on, all up for the whole run:

  before   MMS 1.0.8 as shipped: FIZBUZ_MMS_FAST_PROTOCOL=0 (its frame decoder, one
           PredictionTime [METRICS] line per batch), Netty's own thread counts and
           the JVM's own collector (G1)
  worker   the worker patch only: serving/mms/fast_worker.py in every worker
           (buffered decoder, no per-batch metric lines), the frontend untuned
  after    the default: the worker patch and the tuned frontend of
           serving/mms/config.properties (one Netty thread of each kind, SerialGC)

Each server's answers to all 1023 inputs are checked first. Then, in interleaved
rounds (the order flips every round), wrk at each concurrency against each server,
straight to MMS; while wrk runs the CPU time of the Java frontend and of the workers is
read from /proc (psutil), so each run gives req/s and CPU microseconds per request
for the frontend and the workers. Last, one worker of 'before' and 'after' is profiled by
py-spy under c=64 load: flame graphs (SVG) and the share of samples in the decoder,
the reply's send and the metric lines.

Then the warm-up before ready (FIZBUZ_MMS_WARMUP): in interleaved rounds, a fresh
server started with no warm-up and one started with the default passes over every
input, each measured by wrk at c=64 for the first seconds after it says ready: what
the first clients of a just-started server meet. Writes bench/results/mms_path/.

    fizbuz bench mms-path       (= .venv/bin/python -m bench.mms_path; 3 rounds, c=1,16,64, 8 s each, ~12 min)
    .venv/bin/python -m bench.mms_path --rounds 1 --duration 3 --no-profile --startup-rounds 1  # a smoke run
"""

import argparse
import collections
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import load_generator
from bench.machine import write_report
from fizbuz import answers, logs, settings
from fizbuz.contract import MAX_INPUT, MIN_INPUT
from fizbuz.http_client import predict
from fizbuz.lifecycle import LifecycleError
from serving.mms.private import PrivateMms

log = logging.getLogger("mms-path")

RESULTS = Path(__file__).resolve().parent / "results" / "mms_path"
# MMS's frontend as it was before issue 25: Netty's own thread counts (0) and the
# JVM's own collector on this machine (G1); no warm-up (the bench warms every server).
UNTUNED_FRONTEND = {"mms_netty_threads": 0, "mms_netty_client_threads": 0, "mms_jvm_options": "-XX:+UseG1GC"}
CONFIGS = {"before": {"mms_fast_protocol": 0, **UNTUNED_FRONTEND}, "worker": dict(UNTUNED_FRONTEND), "after": {}}
PATCH_LINE = "fizbuz fast worker: buffered protocol, no per-batch metric lines"
LABELS = {
    "before": "MMS as shipped (before)",
    "worker": "the worker patch only",
    "after": "worker patch + tuned frontend (after: the default)",
}
# Frames of a py-spy profile, grouped by what they are (file:function prefixes).
PROFILE_GROUPS = {
    "frame decoding": ("otf_message_handler.py", "fast_worker.py"),
    "sending the reply (model_service_worker.py:117)": ("model_service_worker.py:117",),
    "[METRICS] lines (emit_metrics)": ("emit_metrics",),
    "the handler (fizbuz_service.handle)": ("handle (fizbuz_service.py",),
}


@dataclass
class Run:
    config: str
    connections: int
    round: int
    per_second: float
    p99_ms: float
    requests: int
    frontend_us: float  # frontend CPU per answered request
    workers_us: float  # all workers' CPU per answered request


def cpu_seconds(processes):
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def check_answers(server, name, clients=16):
    """All 1023 inputs; stop the run on any wrong answer."""
    numbers = range(MIN_INPUT, MAX_INPUT + 1)
    wrong = answers.ask_all(lambda number: predict(server.url, number, 10), numbers, threads=clients)
    if wrong:
        raise LifecycleError(f"{name}: {answers.summary(wrong, len(numbers))}")


def check_patch(server, name):
    """'worker' and 'after' run the worker patch in every worker, 'before' in none (each worker
    says so in mms_log.log), or the comparison is not the one it claims to be."""
    said = (server.logs / "mms_log.log").read_text(errors="replace").count(PATCH_LINE)
    workers = len(server.workers())
    if said != (0 if name == "before" else workers):
        raise LifecycleError(f"'{name}': {said} of {workers} workers run the patch")


def timed_run(server, name, connections, seconds, round_number, wrk_log, threads):
    frontend = server.run.server()
    workers = list(server.workers().values())
    if frontend is None or not workers:
        raise LifecycleError(f"{name}: the server or its workers are gone")
    before = cpu_seconds([frontend]), cpu_seconds(workers)
    result = load_generator.run_wrk(server.url, connections, seconds, threads, wrk_log)
    after = cpu_seconds([frontend]), cpu_seconds(workers)
    if result.errors:
        raise LifecycleError(f"{name} c={connections}: {result.errors} errors: {result.error_detail}")
    answered = result.requests - result.error_detail["status"]
    return Run(
        name,
        connections,
        round_number,
        result.good_per_second,
        result.p99_ms,
        answered,
        (after[0] - before[0]) / answered * 1e6,
        (after[1] - before[1]) / answered * 1e6,
    )


def profile(server, name, seconds, output, wrk_log):
    """py-spy on one worker under c=64: the SVG, and sample shares by group."""
    spy = Path(sys.executable).parent / "py-spy"
    worker = min(server.workers().values(), key=lambda process: process.pid)
    raw = output / f"{name}.raw.txt"
    load = subprocess.Popen(
        [
            load_generator.wrk_binary() or "wrk",
            "-t2",
            "-c64",
            f"-d{seconds + 6}s",
            "-s",
            str(load_generator.LUA_SCRIPT),
            server.url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for form, path in (("flamegraph", output / f"{name}.svg"), ("raw", raw)):
            subprocess.run(
                [
                    str(spy),
                    "record",
                    "--nonblocking",
                    "-p",
                    str(worker.pid),
                    "-d",
                    str(seconds // 2),
                    "-r",
                    "250",
                    "-f",
                    form,
                    "-o",
                    str(path),
                ],
                check=True,
                capture_output=True,
                timeout=seconds * 3 + 30,
            )
    finally:
        load.terminate()
        load.wait(30)
    return profile_shares(raw)


def profile_shares(raw_path):
    """{group: share of samples whose stack holds a frame of that group}, and the total."""
    counts, total = collections.Counter(), 0
    for line in Path(raw_path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for group, needles in PROFILE_GROUPS.items():
            if any(needle in stack for needle in needles):
                counts[group] += int(count)
    return {group: counts[group] / total for group in PROFILE_GROUPS} if total else {}, total


def measure(args, folder):
    runs, shares = [], {}
    wrk_log = folder / "wrk.log"
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, settings in CONFIGS.items():
            log.info("starting MMS '%s'", name)
            server = PrivateMms(workers=2, **settings)
            stack.callback(server.remove)
            stack.callback(server.stop)
            server.start()
            check_answers(server, name)
            check_patch(server, name)
            servers[name] = server
        log.info("all 1023 answers right on each; warming up (%d s each)", args.warmup)
        for server in servers.values():
            load_generator.run_wrk(server.url, 64, args.warmup, args.wrk_threads, wrk_log)
        for round_number in range(1, args.rounds + 1):
            order = list(servers) if round_number % 2 else list(reversed(servers))
            for connections in args.connections:
                for name in order:
                    run = timed_run(
                        servers[name], name, connections, args.duration, round_number, wrk_log, args.wrk_threads
                    )
                    log.info(
                        "round %d c=%-3d %-6s %8.0f req/s  frontend %6.1f us/req  workers %6.1f us/req",
                        round_number,
                        connections,
                        name,
                        run.per_second,
                        run.frontend_us,
                        run.workers_us,
                    )
                    runs.append(run)
        if args.profile:
            for name, server in ((name, servers[name]) for name in ("before", "after")):
                log.info("profiling a worker of '%s' (py-spy, %d s)", name, args.profile_seconds)
                shares[name] = profile(server, name, args.profile_seconds, args.output, wrk_log)
    startup = startup_runs(args, wrk_log) if args.startup_rounds else []
    return runs, shares, startup


def startup_runs(args, wrk_log):
    """Fresh servers, cold and warmed, each measured for the first seconds after it
    said ready; the order flips every round. (run, seconds its start took) pairs."""
    rows = []
    for round_number in range(1, args.startup_rounds + 1):
        order = (0, args.warm_passes) if round_number % 2 else (args.warm_passes, 0)
        for passes in order:
            server = PrivateMms(workers=2, mms_warmup=passes)
            try:
                began = time.monotonic()
                server.start()
                took = time.monotonic() - began
                run = timed_run(
                    server, f"warm-up {passes}", 64, args.startup_seconds, round_number, wrk_log, args.wrk_threads
                )
            finally:
                server.stop()
                server.remove()
            log.info(
                "start-up round %d, %d warm-up passes: start %.1f s, then %.0f req/s, frontend %.1f us/req",
                round_number,
                passes,
                took,
                run.per_second,
                run.frontend_us,
            )
            rows.append((run, took))
    return rows


def startup_report(args, rows):
    names = [f"warm-up {passes}" for passes in (0, args.warm_passes)]
    lines = [
        "",
        f"## Warm-up before ready: the first {args.startup_seconds} s at c=64 after a start",
        "",
        f"{args.startup_rounds} interleaved rounds; each a fresh server started with no warm-up, and one with "
        f"{args.warm_passes} passes over every input (every answer checked) before it says ready "
        "(`FIZBUZ_MMS_WARMUP`); then wrk at c=64 for the first seconds. The start's time includes the "
        "warm-up.",
        "",
        "| start | median start s | median req/s | rounds (req/s) | frontend CPU µs/req | workers CPU µs/req |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name in names:
        mine = [(run, took) for run, took in rows if run.config == name]
        lines.append(
            f"| {name} passes | {statistics.median(t for _, t in mine):.1f} | "
            f"{statistics.median(r.per_second for r, _ in mine):,.0f} | "
            f"{', '.join(f'{r.per_second:,.0f}' for r, _ in mine)} | "
            f"{statistics.median(r.frontend_us for r, _ in mine):.1f} | "
            f"{statistics.median(r.workers_us for r, _ in mine):.1f} |"
        )
    by = {(run.config, run.round): run for run, _ in rows}
    rounds = sorted({run.round for run, _ in rows})
    for key, what in (("per_second", "req/s"), ("frontend_us", "frontend CPU per request")):
        ratios = [getattr(by[(names[1], n)], key) / getattr(by[(names[0], n)], key) for n in rounds]
        lines.append(
            f"\nWarmed / cold, paired by round, {what}: **{statistics.median(ratios):.2f}x** "
            f"({', '.join(f'{x:.2f}' for x in ratios)})."
        )
    return lines


def median_of(runs, name, connections, key):
    return statistics.median(getattr(r, key) for r in runs if r.config == name and r.connections == connections)


def paired(runs, connections, key, name="after"):
    """name/before of the same round (they ran back to back), per round."""
    by = {(r.config, r.round): getattr(r, key) for r in runs if r.connections == connections}
    rounds = sorted({r.round for r in runs})
    return [by[(name, n)] / by[("before", n)] for n in rounds]


def report(args, runs, shares, startup=()):
    lines = [
        "# MMS's own per-request path: before and after issue 25",
        "",
        f"One run of `{' '.join(['python -m bench.mms_path', *args.argv])}`: "
        f"{args.rounds} interleaved rounds (order flipped each round) of {args.duration} s of wrk "
        f"({args.wrk_threads} threads) per point, straight to MMS, after {args.warmup} s of warm-up each; "
        "every server runs the shipped batching (batch 16, delay 1 ms, 2 workers) with metrics on and "
        "answered all 1023 inputs right first. CPU per request is read from /proc while wrk ran "
        "(user + system of the Java frontend, and of both workers together), divided by the answered "
        "requests. The machine is shared with other jobs: compare within this run (the paired "
        "ratios), not with other runs.",
        "",
        "| c | configuration | median req/s | rounds | median p99 ms | frontend CPU µs/req | workers CPU µs/req |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for c in args.connections:
        for name in CONFIGS:
            rounds = ", ".join(f"{r.per_second:,.0f}" for r in runs if r.config == name and r.connections == c)
            lines.append(
                f"| {c} | {LABELS[name]} | {median_of(runs, name, c, 'per_second'):,.0f} | {rounds} | "
                f"{median_of(runs, name, c, 'p99_ms'):.2f} | {median_of(runs, name, c, 'frontend_us'):.1f} | "
                f"{median_of(runs, name, c, 'workers_us'):.1f} |"
            )
    lines += [
        "",
        "Each configuration / before, paired within each round (median, and each round): 'the worker "
        "patch only' is what the worker patch bought; 'after' adds the frontend's tuning to it.",
        "",
        "| c | configuration | req/s | workers CPU per request | frontend CPU per request |",
        "|---:|---|---|---|---|",
    ]
    for c in args.connections:
        for name in [n for n in CONFIGS if n != "before"]:
            cells = []
            for key in ("per_second", "workers_us", "frontend_us"):
                ratios = paired(runs, c, key, name)
                cells.append(f"**{statistics.median(ratios):.2f}x** ({', '.join(f'{x:.2f}' for x in ratios)})")
            lines.append(f"| {c} | {LABELS[name]} | " + " | ".join(cells) + " |")
    if shares:
        lines += [
            "",
            "Where one worker's time goes under c=64 (py-spy, share of samples whose stack holds "
            "the frame; flame graphs: [before.svg](before.svg), [after.svg](after.svg)):",
            "",
            "| part | " + " | ".join(LABELS[name] for name in shares) + " |",
            "|---|" + "---:|" * len(shares),
        ]
        for group in PROFILE_GROUPS:
            lines.append(f"| {group} | " + " | ".join(f"{shares[name][0].get(group, 0):.0%}" for name in shares) + " |")
        lines.append("| samples | " + " | ".join(str(shares[name][1]) for name in shares) + " |")
    if startup:
        lines += startup_report(args, startup)
    return write_report(lines, args.output / "mms_path.md", args.load_before)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    load_generator.add_round_arguments(parser, (1, 16, 64), "untimed seconds per server first")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the py-spy profiles")
    parser.add_argument("--profile-seconds", type=int, default=16, help="default %(default)s")
    parser.add_argument(
        "--startup-rounds",
        type=int,
        default=3,
        help="rounds of the warm-up comparison, fresh servers each (0: skip; default %(default)s)",
    )
    parser.add_argument(
        "--startup-seconds", type=int, default=5, help="seconds of wrk right after a start (default %(default)s)"
    )
    parser.add_argument(
        "--warm-passes",
        type=int,
        default=settings.default("mms_warmup"),
        help="the warmed server's passes (default: the shipped %(default)s)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="default %(default)s")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or not args.connections or min(args.connections) < 1:
        parser.error("rounds, duration and connections must be positive")
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def main(argv=None):
    logs.setup("progress")
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]
    args.output.mkdir(parents=True, exist_ok=True)
    measured = load_generator.measure_in_temp(
        "mms_path", "fbz-mms-path-", lambda folder: measure(args, folder), (LifecycleError, subprocess.SubprocessError)
    )
    if measured is None:
        return 1
    print(report(args, *measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
