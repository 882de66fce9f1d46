#!/usr/bin/env python3
"""Side-by-side throughput benchmark: MMS (batch 1 and a batching sweep), the
Flask + gunicorn baseline and a fixed-reply nginx, all loaded by wrk with the
same Lua POST script and settings, one configuration at a time, in one run.

For each configuration: start the server on free ports in a temp folder,
check a sample of its answers (a wrong answer fails that configuration
loudly), warm it up, run wrk at each concurrency, stop it by PID. Then the
handler micro-benchmark (bench/bench_handler.py). Results go to
OUTPUT_DIR/results.md, results.csv and requests_per_second.png; server and wrk
logs stay in the printed work folder.

Examples:
  .venv/bin/python bench/run_bench.py                    # everything, ~10 min on 2 cores
  .venv/bin/python bench/run_bench.py --quick            # smoke run, ~2 min, into bench/results/quick
  .venv/bin/python bench/run_bench.py --configs 'mms-b1-*,flask-*,nginx' --duration 20
  .venv/bin/python bench/run_bench.py --batch-sizes 8 --delays 0,1 --list
"""

import argparse
import datetime
import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import load_generator, machine, report
from bench.servers import GunicornServer, MmsServer, NginxServer, ServerError
from serving.front.nginx import find_nginx
from fizbuz import archive
from fizbuz.contract import MAR_FILE_NAME, ROOT

HERE = ROOT / "bench"

CORES = os.cpu_count() or 1
PLOT_NAME = "requests_per_second.png"
APT_PACKAGES = ["wrk", "nginx"]


def say(message):
    print(f"==> {message}", flush=True)


def die(message):
    print(f"run_bench.py: {message}", file=sys.stderr)
    sys.exit(1)


def int_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers")
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} needs at least one number, none negative")
    return values


def configurations(args):
    """(name, kind, factory(folder, model_store) -> server, description), in run order."""
    found = []
    for workers in (1, 2):
        found.append(
            (
                f"mms-b1-w{workers}",
                "mms",
                lambda f, s, w=workers: MmsServer(f, s, batch_size=1, max_batch_delay=0, workers=w),
                f"MMS, batch 1, {workers} worker(s)",
            )
        )
    for batch in args.batch_sizes:
        for delay in args.delays:
            found.append(
                (
                    f"mms-b{batch}-d{delay}",
                    "mms",
                    lambda f, s, b=batch, d=delay: MmsServer(
                        f, s, batch_size=b, max_batch_delay=d, workers=args.mms_workers
                    ),
                    f"MMS, batch_size {batch}, max_batch_delay {delay} ms, {args.mms_workers} workers",
                )
            )
    found.append(
        (
            "flask-sync",
            "flask",
            lambda f, s: GunicornServer(f, "sync", workers=args.flask_workers, threads=1),
            f"Flask + gunicorn, {args.flask_workers} sync workers",
        )
    )
    found.append(
        (
            "flask-gthread",
            "flask",
            lambda f, s: GunicornServer(f, "gthread", workers=args.flask_workers, threads=args.threads),
            f"Flask + gunicorn, {args.flask_workers} gthread workers x {args.threads} threads",
        )
    )
    found.append(("nginx", "nginx", lambda f, s: NginxServer(f, workers=CORES), f"nginx, fixed reply, {CORES} workers"))
    patterns = [p.strip() for p in args.configs.split(",") if p.strip()]
    chosen = [c for c in found if any(fnmatch.fnmatch(c[0], p) for p in patterns)]
    if not chosen:
        die(f"--configs {args.configs!r} matches none of: {', '.join(c[0] for c in found)}")
    return chosen


def build_model_store(work, log_file):
    store = work / "model_store"
    say(f"building the .mar into {store} (log {log_file})")
    try:
        archive.build(store, log_file)
    except archive.BuildError as error:
        die(str(error))
    return store


def bench_configuration(name, kind, factory, folder, model_store, args):
    """Rows for one configuration; raises ServerError or LoadError."""
    rows = []
    with factory(folder, model_store) as server:
        checked = server.check_answers(args.check_sample)
        say(f"{name}: {checked} sampled answers are right (pid {server.pid}, port {server.port})")
        wrk_log = folder / "wrk.log"
        if args.warmup:
            load_generator.run_wrk(server.url, max(args.concurrency), args.warmup, args.wrk_threads, wrk_log)
        for connections in args.concurrency:
            load = os.getloadavg()[0]
            result = load_generator.run_wrk(server.url, connections, args.duration, args.wrk_threads, wrk_log)
            rows.append(
                {
                    "config": name,
                    "kind": kind,
                    "concurrency": connections,
                    "req_per_s": result.good_per_second,
                    "p50_ms": result.p50_ms,
                    "p90_ms": result.p90_ms,
                    "p99_ms": result.p99_ms,
                    "max_ms": result.max_ms,
                    "errors": result.errors,
                    "load_avg_1m": load,
                }
            )
            say(
                f"{name} c={connections}: {result.good_per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms, errors {result.errors}"
            )
    return rows


def run_handler_bench(model_store, work, seconds, engines):
    """The handler micro-benchmark's tables, one per MXNet engine ("default" =
    what the handler picks itself, NaiveEngine; ThreadedEnginePerDevice is
    MXNet's own default, for comparison)."""
    sections = []
    for engine in engines:
        say(f"handler micro-benchmark (bench/bench_handler.py), MXNet engine: {engine}")
        table = work / f"handler-{engine}.md"
        command = [
            sys.executable,
            str(HERE / "bench_handler.py"),
            "--seconds",
            str(seconds),
            "--mar",
            str(model_store / MAR_FILE_NAME),
            "--markdown",
            str(table),
        ]
        if engine != "default":
            command += ["--mxnet-engine", engine]
        with open(work / "bench_handler.log", "a") as log:
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=600
            )
        if result.returncode != 0:
            say(f"the handler micro-benchmark failed; see {work / 'bench_handler.log'}")
            continue
        sections.append(f"### MXNet engine: {engine}\n\n{table.read_text().strip()}\n")
    return "\n".join(sections) or None


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs", default="*", help="comma-separated names or patterns to run, e.g. 'mms-b1-*,flask-*' (see --list)"
    )
    parser.add_argument("--list", action="store_true", help="print the configurations and exit")
    parser.add_argument("--batch-sizes", type=int_list, default=[8, 16], help="MMS batching sweep (default: 8,16)")
    parser.add_argument(
        "--delays",
        type=int_list,
        default=[0, 1, 2, 5],
        help="max_batch_delay values in ms for the sweep (default: 0,1,2,5)",
    )
    parser.add_argument(
        "--concurrency", type=int_list, default=[1, 16, 64], help="wrk connections per point (default: 1,16,64)"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per point (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed seconds before the points (default: 3)")
    parser.add_argument(
        "--wrk-threads", type=int, default=2, help="wrk threads, at most one per connection (default: 2)"
    )
    parser.add_argument(
        "--check-sample",
        type=int,
        default=200,
        help="random inputs checked before timing (default: 200, plus both bounds)",
    )
    parser.add_argument(
        "--mms-workers", type=int, default=CORES, help=f"workers for the batching sweep (default: {CORES})"
    )
    parser.add_argument("--flask-workers", type=int, default=CORES, help=f"gunicorn workers (default: {CORES})")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (default: 4)")
    parser.add_argument(
        "--handler-seconds",
        type=float,
        default=2.0,
        help="seconds per case of the handler micro-benchmark; 0 skips it (default: 2)",
    )
    parser.add_argument(
        "--handler-engines",
        default="default,ThreadedEnginePerDevice",
        help="MXNet engines for the handler micro-benchmark; 'default' is the handler's "
        "own choice (default: default,ThreadedEnginePerDevice)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5 configurations, 3 s points, c=1,16, into bench/results/quick"
    )
    parser.add_argument("--output-dir", type=Path, help="where results go (default: bench/results)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk/nginx")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work folder after a clean run")
    return parser


def apply_quick(args):
    if args.configs == "*":
        args.configs = "mms-b1-w2,mms-b8-d1,flask-*,nginx"
    args.duration, args.warmup, args.concurrency = 3, 1, [1, 16]
    args.check_sample, args.handler_seconds = 50, 0.5
    args.output_dir = args.output_dir or HERE / "results" / "quick"


def main():
    args = build_parser().parse_args()
    # On SIGTERM, unwind like on Ctrl-C so every started server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        apply_quick(args)
    output = (args.output_dir or HERE / "results").resolve()
    chosen = configurations(args)
    if args.list:
        for name, _, _, description in chosen:
            print(f"{name:<16} {description}")
        return 0
    if args.duration < 1 or args.wrk_threads < 1:
        die("--duration and --wrk-threads must be at least 1")

    # A short path: MMS worker sockets live in each run folder (108-byte limit).
    work = Path(tempfile.mkdtemp(prefix="fbz-bench-"))
    say(f"work folder (server, wrk and build logs): {work}")
    try:
        load_generator.ensure_tools(allow_install=not args.no_install, log_file=work / "apt.log")
    except load_generator.LoadError as error:
        die(str(error))
    started = time.monotonic()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    model_store = build_model_store(work, work / "build_mar.log")

    rows, failures = [], []
    for index, (name, kind, factory, description) in enumerate(chosen, 1):
        say(f"[{index}/{len(chosen)}] {name}: {description}")
        try:
            rows += bench_configuration(name, kind, factory, work / name, model_store, args)
        except (ServerError, load_generator.LoadError) as error:
            failures.append((name, str(error)))
            print(f"run_bench.py: CONFIGURATION {name} FAILED: {error}", file=sys.stderr, flush=True)
    engines = [e.strip() for e in args.handler_engines.split(",") if e.strip()]
    handler_md = (
        run_handler_bench(model_store, work, args.handler_seconds, engines)
        if args.handler_seconds > 0 and engines
        else None
    )
    load_after = os.getloadavg()
    minutes = (time.monotonic() - started) / 60

    output.mkdir(parents=True, exist_ok=True)
    report.add_ratios(rows)
    settings = [
        f"run {stamp}, {minutes:.1f} min in all; configurations one at a time, each started fresh",
        f"wrk with bench/post_inputs.lua (POST, n cycling through 0..1022), {args.wrk_threads} threads "
        f"(at most one per connection), {args.duration} s per point after a {args.warmup} s warm-up at "
        f"c={max(args.concurrency)}; req/s counts 2xx answers only",
        f"answers checked before timing: {args.check_sample} random inputs + both bounds, 16 at a time",
        *[f"`{name}`: {description}" for name, _, _, description in chosen],
        f"load average (1/5/15 min) before: {'/'.join(f'{v:.2f}' for v in load_before)}, "
        f"after: {'/'.join(f'{v:.2f}' for v in load_after)}",
    ]
    notes = args.note + [
        "wrk, the servers and anything else on the machine share its cores: "
        "ratios measured side by side in this run mean more than absolute figures.",
        "wrk 4 corrects its percentiles for coordinated omission: one stall of half a second adds "
        "samples for the requests it held up, so p99 can be far above p50 (max_ms is in results.csv).",
    ]
    title = f"fizbuz-serve benchmark ({stamp})"
    report.write_csv(rows, output / "results.csv")
    if rows:
        report.plot(rows, output / PLOT_NAME, title)
    report.write_markdown(
        output / "results.md",
        title,
        notes,
        machine.describe(load_generator.wrk_binary(), find_nginx()),
        settings,
        rows,
        handler_md,
        failures,
        PLOT_NAME,
    )
    say(f"results: {output / 'results.md'}, {output / 'results.csv'}, {output / PLOT_NAME} ({minutes:.1f} min)")
    if failures:
        die(f"{len(failures)} configuration(s) failed: {', '.join(n for n, _ in failures)}; logs in {work}")
    if not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
