#!/usr/bin/env python3
"""Per-call latency of the three FizBuzNet runners, at batch 1 and batch 64.

  C++ LibTorch   build/cpp/fizbuz_cli --bench (times its own calls in-process)
  PyTorch eager  fizbuz.model.FizBuzNet in this process
  MXNet          fizbuz_service.MXNetModelService.inference(), the handler's
                 path, initialised from a .mar built by build_mar.sh

Each runner is timed two ways: "numbers -> classes" (encode the inputs, one
forward pass, argmax: what answering costs) and "forward only" (the model on
an already-encoded batch). Every runner uses one thread, as MMS workers do
(OMP_NUM_THREADS=1). Runners are interleaved within each round, and the
table shows the median over rounds of each round's mean per call, so a burst
of load from other processes moves one round, not the result.

Also reports the C++ CLI's cold start: one process that loads the model and
answers one number. Prints the table and writes it, with a description of
the machine, to bench/results/runners.md (--no-write to skip).
"""

import os

# Before numpy, torch and mxnet load their OpenMP runtimes.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import mxnet  # noqa: E402
import numpy  # noqa: E402
import torch  # noqa: E402

from fizbuz import archive, torchscript  # noqa: E402
from fizbuz.contract import ROOT, WEIGHTS  # noqa: E402
from fizbuz.handler_harness import load_service  # noqa: E402
from fizbuz.model import encode_batch, load_model  # noqa: E402
from fizbuz_codec import MAX_INPUT, MIN_INPUT  # noqa: E402

CLI = ROOT / "build" / "cpp" / "fizbuz_cli"
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "runners.md"
WARM_UP_CALLS = 50
BENCH_LINE = re.compile(r"bench batch_size=(\d+) calls=(\d+) forward_us=([\d.]+) classify_us=([\d.]+)")


def say(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def bench_numbers(batch_size):
    """The first batch_size valid inputs, as fizbuz_cli --bench uses."""
    count = MAX_INPUT - MIN_INPUT + 1
    return [MIN_INPUT + i % count for i in range(batch_size)]


def mean_microseconds(call, calls):
    for _ in range(WARM_UP_CALLS):
        call()
    start = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - start) / 1000 / calls


# --- the three runners: each returns (forward_us, classify_us) per call ---


def time_cpp(model_path, batch_size, calls):
    result = subprocess.run(
        [str(CLI), str(model_path), "--bench", str(calls), "--batch-size", str(batch_size)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    match = BENCH_LINE.fullmatch(result.stdout.strip())
    if result.returncode != 0 or not match:
        raise RuntimeError(f"fizbuz_cli --bench failed: {result.stdout}{result.stderr}")
    return float(match.group(3)), float(match.group(4))


def time_eager(model, batch_size, calls):
    numbers = bench_numbers(batch_size)
    encoded = encode_batch([n + 1 for n in numbers])

    def forward():
        with torch.inference_mode():
            model(encoded)

    def classify():
        with torch.inference_mode():
            return model(encode_batch([n + 1 for n in numbers])).argmax(dim=1).tolist()

    return mean_microseconds(forward, calls), mean_microseconds(classify, calls)


def time_mxnet(service, batch_size, calls):
    numbers = bench_numbers(batch_size)
    # Forward only reaches into the bound executor: inference() has no
    # forward-only entry point. wait_to_read() because MXNet runs asynchronously.
    executor = service._executor
    service._input[:] = service._bit_table[numpy.asarray(numbers) - MIN_INPUT]

    def forward():
        executor.forward(is_train=False)
        executor.outputs[0].wait_to_read()

    return mean_microseconds(forward, calls), mean_microseconds(lambda: service.inference(numbers), calls)


def time_cold_start(model_path):
    start = time.perf_counter()
    result = subprocess.run([str(CLI), str(model_path), "14"], capture_output=True, text=True, timeout=120)
    elapsed_ms = (time.perf_counter() - start) * 1000
    if result.returncode != 0 or result.stdout != "FizzBuzz\n":
        raise RuntimeError(f"fizbuz_cli 14 failed: {result.stdout}{result.stderr}")
    return elapsed_ms


# --- set-up ---


def build_cli():
    say("building the C++ runner (cpp/build.sh; quick when already built)")
    result = subprocess.run([str(ROOT / "cpp" / "build.sh")], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        sys.exit(f"bench_runners.py: cpp/build.sh failed:\n{result.stdout}{result.stderr}")


def mxnet_services(work_dir, batch_sizes):
    """One MXNetModelService per batch size (its executor is bound to one size),
    loaded from a .mar built by the real build_mar.sh, unpacked as MMS does."""
    say("building the .mar with ./build_mar.sh (about half a minute)")
    try:
        mar = archive.build(work_dir / "model_store")
    except archive.BuildError as error:
        sys.exit(f"bench_runners.py: {error}")
    model_dir = archive.unpack(mar, work_dir / "unpacked")
    return {batch_size: load_service(model_dir, batch_size) for batch_size in batch_sizes}


# --- the report ---


def command_output(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""


def machine_lines():
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    gxx = command_output("g++", "--version").splitlines()[:1] or ["unknown"]
    cmake = command_output("cmake", "--version").splitlines()[:1] or ["unknown"]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- CPU: {cpu_model}; nproc = {len(os.sched_getaffinity(0))}",
        f"- OS: {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- torch {torch.__version__} (LibTorch from the same wheel), mxnet {mxnet.__version__}, "
        f"numpy {numpy.__version__}",
        f"- {gxx[0]}; {cmake[0]}; fizbuz_cli built with -O3 (CMake Release)",
        f"- load average (1, 5, 15 min) when the run started: {load}",
    ]


def median_and_range(values):
    return statistics.median(values), min(values), max(values)


def table_lines(results, batch_sizes):
    lines = [
        "| runner | batch | numbers -> classes, µs/call | per number, µs | forward only, µs/call | "
        "numbers -> classes, min..max over rounds |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for batch_size in batch_sizes:
        for runner in RUNNERS:
            rounds = results[(runner, batch_size)]
            classify, low, high = median_and_range([c for _, c in rounds])
            forward = statistics.median(f for f, _ in rounds)
            lines.append(
                f"| {runner} | {batch_size} | {classify:.1f} | {classify / batch_size:.2f} | "
                f"{forward:.1f} | {low:.1f}..{high:.1f} |"
            )
    return lines


def report(args, results, cold_starts, machine):
    cold, cold_low, cold_high = median_and_range(cold_starts)
    return "\n".join(
        [
            "# FizBuzNet runners: C++ LibTorch vs PyTorch eager vs MXNet (handler path)",
            "",
            f"Written by `bench/bench_runners.py --rounds {args.rounds} --calls {args.calls}` on "
            f"{datetime.date.today().isoformat()}.",
            "",
            "## Machine",
            "",
            *machine,
            "",
            "The machine has only 2 cores and other jobs (other agents' builds and tests) may have been "
            "running at the same time, so each figure is the **median over "
            f"{args.rounds} rounds** of that round's mean per call ({args.calls} calls per round after "
            f"{WARM_UP_CALLS} warm-up calls), with the runners interleaved in every round; the last "
            "column shows the spread. Read the figures as orders of magnitude, not as exact values.",
            "",
            "## Per-call latency (one thread each, as in an MMS worker)",
            "",
            *table_lines(results, args.batch_sizes),
            "",
            "- *numbers -> classes*: a list of inputs n in, class indices out: encode the bits of "
            "n + 1, one forward pass, argmax. C++: `Runner::classify`; eager: "
            "`model(encode_batch(...)).argmax(1).tolist()`; MXNet: `MXNetModelService.inference` "
            "(a numpy gather from a precomputed bit table into the executor bound at that batch size).",
            "- *forward only*: the model on an already-encoded batch. C++: `Module::forward`; eager: "
            "`model(x)`; MXNet: `executor.forward()` + `wait_to_read()`.",
            "- All inside one process; the HTTP, MMS frontend and JSON costs of serving are not included.",
            "",
            "## C++ CLI cold start",
            "",
            f"`fizbuz_cli fizbuz.pt 14` as a fresh process (start, load LibTorch and the model, check "
            f"it, answer): median **{cold:.0f} ms** ({cold_low:.0f}..{cold_high:.0f}) over "
            f"{len(cold_starts)} runs.",
            "",
        ]
    )


RUNNERS = ("C++ LibTorch", "PyTorch eager", "MXNet (handler)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (default: %(default)s)")
    parser.add_argument(
        "--calls", type=int, default=5000, help="timed calls per runner per round (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 64], help="batch sizes to time (default: %(default)s)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the results (default: %(default)s)"
    )
    parser.add_argument("--no-write", action="store_true", help="only print the results")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    if any(not 1 <= b <= MAX_INPUT + 1 for b in args.batch_sizes):
        parser.error(f"batch sizes must be between 1 and {MAX_INPUT + 1}")
    return args


def main(argv=None):
    args = parse_args(argv)
    machine = machine_lines()  # before the set-up adds its own load
    torch.set_num_threads(1)
    build_cli()
    model = load_model(WEIGHTS)
    with tempfile.TemporaryDirectory(prefix="bench_runners.") as work:
        work_dir = Path(work)
        model_path = work_dir / "fizbuz.pt"
        torchscript.export(model, model_path)
        services = mxnet_services(work_dir, args.batch_sizes)

        timers = {
            "C++ LibTorch": lambda b: time_cpp(model_path, b, args.calls),
            "PyTorch eager": lambda b: time_eager(model, b, args.calls),
            "MXNet (handler)": lambda b: time_mxnet(services[b], b, args.calls),
        }
        results = {(runner, b): [] for runner in RUNNERS for b in args.batch_sizes}
        cold_starts = []
        for round_number in range(1, args.rounds + 1):
            say(f"round {round_number}/{args.rounds}")
            for batch_size in args.batch_sizes:
                for runner in RUNNERS:
                    results[(runner, batch_size)].append(timers[runner](batch_size))
            cold_starts.append(time_cold_start(model_path))

    text = report(args, results, cold_starts, machine)
    print(text)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
