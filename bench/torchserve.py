"""MMS as shipped against TorchServe 0.12's best configuration for this model, side by side in one run.

Issue 25 aims to pass TorchServe by half. Three servers, all up for the whole run, all
batching 16 requests for at most 1 ms over 2 workers:

  mms             a private MMS with the shipped defaults (serving/mms/private.py: the worker
                  patch, the tuned frontend, metrics on), our handler and .mar
  torchserve      TorchServe 0.12.0 from its own venv (bench/torchserve/setup.sh), FizBuzNet
                  in eager PyTorch (our weights, our FizBuzNet class) behind bench/torchserve/
                  fizbuz_ts_handler.py, packed by torch-model-archiver into a temporary model
                  store, with the cheapest settings we found for it (config_text below):
                  async logging, no access log and no line per request or batch written
                  (bench/torchserve/log4j2.xml), metrics kept in memory (metrics_mode=
                  prometheus, no system metrics, no metrics API), raw bodies to the handler
                  (decode_input_request=false, as MMS), one torch thread per worker
                  (OMP_NUM_THREADS=1 and torch.set_num_threads(1)), no token authorization,
                  no config snapshots, and MMS's measured frontend tuning (one Netty thread
                  of each kind, the serial collector)
  torchserve-own  the same with TorchServe's own frontend defaults (Netty's thread counts,
                  the JVM's collector), in case those suit it better: the better of the two
                  at each concurrency is TorchServe's best

Each server's answers to all 1023 inputs, and a few bad requests (each must get a 400 with
a JSON error), are checked first. Then each is warmed by wrk, and in interleaved rounds (the
order flips every round) wrk (bench/post_inputs.lua) runs at each concurrency against each;
while it runs, the CPU time of every process of the server (frontend, workers, MMS's metrics
exporter, TorchServe's launcher) is read from /proc. Writes
bench/results/torchserve/torchserve.md: req/s, p99, CPU per request, and MMS / TorchServe
ratios paired by round.

    fizbuz bench torchserve     (= .venv/bin/python -m bench.torchserve; 3 rounds, c=16,64, 8 s each, ~6 min)
    .venv/bin/python -m bench.torchserve --rounds 1 --duration 3 --warmup 3 --torchserve torchserve  # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import psutil

from bench import load_generator
from bench.machine import describe, write_report
from bench.mms_path import check_answers, cpu_seconds
from fizbuz import logs, settings
from fizbuz.contract import MODEL_NAME, ROOT, WEIGHTS
from fizbuz.http_client import answers_smoke_request, call, predict_url
from fizbuz.lifecycle import LifecycleError, end_family, free_ports, is_alive, spawn, tail, wait_until
from serving.mms.private import PrivateMms

log = logging.getLogger("torchserve-bench")

HERE = Path(__file__).resolve().parent / "torchserve"
SETUP_SCRIPT = HERE / "setup.sh"
HANDLER = HERE / "fizbuz_ts_handler.py"
LOG_CONFIG = HERE / "log4j2.xml"
RESULTS = Path(__file__).resolve().parent / "results" / "torchserve"
# What the archive holds beside the handler: the codec, and the model class as the
# package path the handler imports (fizbuz/model.py; an empty fizbuz/__init__.py).
CODEC = ROOT / "fizbuz_codec.py"
MODEL_CLASS = ROOT / "fizbuz" / "model.py"
MODEL_VERSION = "1.0"
# The shipped MMS batching, given to TorchServe too.
BATCH_SIZE, MAX_BATCH_DELAY_MS, WORKERS = 16, 1, 2
RESPONSE_TIMEOUT_S = 120
START_TIMEOUT_S = 240  # two JVMs and four workers on a shared 2-core box
# TorchServe's frontend two ways, both measured, the better one counted as its best: MMS's
# measured tuning (one Netty thread of each kind, the serial collector) and its own defaults
# (Netty's 2 x cores threads of each kind, the JVM's collector: G1). (netty threads, JVM options)
TS_FRONTENDS = {"torchserve": (1, "-XX:+UseSerialGC"), "torchserve-own": (0, "")}
LABELS = {
    "mms": "MMS 1.0.8 as shipped",
    "torchserve": "TorchServe 0.12.0, MMS's frontend tuning (1 Netty thread of each kind, SerialGC)",
    "torchserve-own": "TorchServe 0.12.0, its own frontend defaults (Netty's threads, G1)",
}
# Bodies each server must refuse with a 400 and a JSON error before it is measured.
BAD_BODIES = (b'{"input.1": 1023}', b'{"input.1": "14"}', b"not json", b'{"input.2": 1}')


def ts_venv() -> Path:
    return Path(settings.value("torchserve_venv"))


def ensure_venv() -> Path:
    """.venv-torchserve, made or refreshed by setup.sh (a no-op when up to date)."""
    result = subprocess.run([str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise LifecycleError(f"bench/torchserve/setup.sh failed:\n{result.stdout}{result.stderr}")
    return ts_venv()


def stage_archive(folder: Path, venv: Path) -> Path:
    """Pack FizBuzNet for TorchServe into folder/model_store; returns the store."""
    stage, store = folder / "stage", folder / "model_store"
    # torch-model-archiver copies the contents of a folder given in --extra-files to the
    # archive's root: `extra` holds what must sit beside the handler, fizbuz/ as a folder.
    extra = stage / "extra"
    (extra / "fizbuz").mkdir(parents=True)
    store.mkdir()
    shutil.copy(HANDLER, stage / HANDLER.name)
    shutil.copy(CODEC, extra / CODEC.name)
    shutil.copy(MODEL_CLASS, extra / "fizbuz" / "model.py")
    (extra / "fizbuz" / "__init__.py").write_text('"""FizBuzNet\'s class, from the project\'s fizbuz/model.py."""\n')
    command = [
        str(venv / "bin" / "torch-model-archiver"),
        "--model-name",
        MODEL_NAME,
        "--version",
        MODEL_VERSION,
        "--serialized-file",
        str(WEIGHTS),
        "--handler",
        str(stage / HANDLER.name),
        "--extra-files",
        str(extra),
        "--export-path",
        str(store),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not (store / f"{MODEL_NAME}.mar").is_file():
        raise LifecycleError(f"torch-model-archiver failed:\n{result.stdout}{result.stderr}")
    return store


def config_text(
    ports: tuple[int, ...], model_store: Path, netty_threads: int = 1, jvm_options: str = "-XX:+UseSerialGC"
) -> str:
    """TorchServe's config.properties for the bench: loopback ports (inference,
    management, metrics, and the gRPC APIs TorchServe always opens: two of them
    at their default ports would stop a second instance), the model loaded at
    start with the shipped batching."""
    inference, management, metrics, grpc_inference, grpc_management = ports
    model = {
        MODEL_NAME: {
            MODEL_VERSION: {
                "defaultVersion": True,
                "marName": f"{MODEL_NAME}.mar",
                "minWorkers": WORKERS,
                "maxWorkers": WORKERS,
                "batchSize": BATCH_SIZE,
                "maxBatchDelay": MAX_BATCH_DELAY_MS,
                "responseTimeout": RESPONSE_TIMEOUT_S,
            }
        }
    }
    settings = {
        "inference_address": f"http://127.0.0.1:{inference}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": grpc_inference,
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": grpc_management,
        "model_store": str(model_store),
        "load_models": f"{MODEL_NAME}.mar",
        "models": json.dumps(model),
        "default_workers_per_model": WORKERS,
        "async_logging": "true",
        "metrics_mode": "prometheus",
        "disable_system_metrics": "true",
        "enable_metrics_api": "false",
        "decode_input_request": "false",
        "disable_token_authorization": "true",
        "install_py_dep_per_model": "false",
        "job_queue_size": 1000,
        "default_response_timeout": RESPONSE_TIMEOUT_S,
    }
    if netty_threads:
        settings |= {"number_of_netty_threads": netty_threads, "netty_client_threads": netty_threads}
    if jvm_options:
        settings["vmargs"] = jvm_options
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class TorchServe:
    """A private TorchServe in `folder` (its config, logs, temp files and pid file all
    there), started in the foreground by its launcher and stopped by that pid."""

    def __init__(
        self, folder: Path, venv: Path, model_store: Path, netty_threads: int = 1, jvm_options: str = "-XX:+UseSerialGC"
    ) -> None:
        self.folder, self.venv = folder, venv
        self.ports = free_ports(5)
        self.logs, self.tmp = folder / "logs", folder / "tmp"
        self.config = folder / "config.properties"
        self.config_text = config_text(self.ports, model_store, netty_threads, jvm_options)
        self.process: psutil.Process | None = None

    @property
    def url(self) -> str:
        return predict_url(self.ports[0])

    def start(self) -> None:
        self.logs.mkdir(parents=True)
        self.tmp.mkdir()
        self.config.write_text(self.config_text)
        env = dict(
            os.environ,
            TMPDIR=str(self.tmp),  # the launcher's pid file, never the shared /tmp's
            TEMP=str(self.tmp),
            LOG_LOCATION=str(self.logs),
            METRICS_LOCATION=str(self.logs),
            OMP_NUM_THREADS="1",
        )
        command = [
            self.venv / "bin" / "torchserve",
            "--start",
            "--foreground",
            "--ts-config",
            self.config,
            "--log-config",
            LOG_CONFIG,
            "--ncs",
            "--disable-token-auth",
        ]
        self.process = spawn(command, self.logs / "launcher.log", env=env, cwd=self.folder)
        try:
            wait_until(self.ready, START_TIMEOUT_S, "TorchServe's workers", interval=0.5, alive=self.alive)
        except LifecycleError as error:
            raise LifecycleError(
                f"{error}; ts_log.log ends with:\n{tail(self.logs / 'ts_log.log')}\n(a worker's own traceback is "
                "written at INFO: set MODEL_LOG's level to info in bench/torchserve/log4j2.xml to see it)"
            ) from None

    def alive(self) -> bool:
        return self.process is not None and is_alive(self.process)

    def ready(self) -> bool:
        """Every worker READY and a real prediction right."""
        status, text = call("GET", f"http://127.0.0.1:{self.ports[1]}/models/{MODEL_NAME}", timeout=5)
        if status != 200:
            return False
        try:
            ready = sum(worker.get("status") == "READY" for worker in json.loads(text)[0]["workers"])
        except (ValueError, LookupError, TypeError, AttributeError):  # not the description asked for: not ready
            return False
        return ready == WORKERS and answers_smoke_request(self.url)

    def frontend(self) -> psutil.Process | None:
        """The JVM (the launcher's one child)."""
        with contextlib.suppress(psutil.Error):
            return next(iter(self.process.children()), None)
        return None

    def processes(self) -> tuple[list[psutil.Process], list[psutil.Process], list[psutil.Process]]:
        """(the frontend, its workers, the rest: the launcher)."""
        frontend = self.frontend()
        if frontend is None:
            raise LifecycleError("torchserve: the frontend is gone")
        return [frontend], frontend.children(recursive=True), [self.process]

    def stop(self) -> None:
        if self.process is not None:
            end_family(self.process, grace=20)


def mms_processes(server: PrivateMms) -> tuple[list[psutil.Process], list[psutil.Process], list[psutil.Process]]:
    """(the frontend, its workers, the rest: the metrics exporter)."""
    frontend = server.run.server()
    workers = list(server.workers().values())
    if frontend is None or not workers:
        raise LifecycleError("mms: the server or its workers are gone")
    exporter = [p for p in (pid_file.process() for pid_file in server.pid_files[1:]) if p is not None]
    return [frontend], workers, exporter


def check_errors(url: str, name: str) -> None:
    """Each bad body gets a 400 whose JSON says what was wrong."""
    for body in BAD_BODIES:
        status, text = call("POST", url, 10, body, {"Content-Type": "application/json"})
        with contextlib.suppress(ValueError):
            reply = json.loads(text)
            if status == 400 and isinstance(reply, dict) and reply.get("error"):
                continue
        raise LifecycleError(f"{name}: {body!r} got {status} {text[:200]!r}, not a 400 JSON error")


@dataclass
class Run:
    server: str
    connections: int
    round: int
    per_second: float
    p99_ms: float
    requests: int
    frontend_us: float  # CPU per answered request
    workers_us: float
    all_us: float  # every process of the server


def timed_run(name, processes, url, connections, seconds, round_number, wrk_log, threads) -> Run:
    groups = processes()
    before = [cpu_seconds(group) for group in groups]
    result = load_generator.run_wrk(url, connections, seconds, threads, wrk_log)
    after = [cpu_seconds(group) for group in groups]
    if result.errors:
        raise LifecycleError(f"{name} c={connections}: {result.errors} errors: {result.error_detail}")
    answered = result.requests - result.error_detail["status"]
    used = [(b - a) / answered * 1e6 for a, b in zip(before, after)]
    return Run(name, connections, round_number, result.good_per_second, result.p99_ms, answered, *used[:2], sum(used))


def measure(args, folder: Path) -> list[Run]:
    venv = ensure_venv()
    wrk_log = folder / "wrk.log"
    runs = []
    with contextlib.ExitStack() as stack:
        log.info("starting MMS (shipped defaults)")
        mms = PrivateMms(workers=WORKERS)
        stack.callback(mms.remove)
        stack.callback(mms.stop)
        mms.start()
        servers = {"mms": mms}
        targets = {"mms": (mms.url, lambda: mms_processes(mms))}
        store = stage_archive(folder, venv)
        args.ts_configs = {}
        for name in args.torchserve:
            log.info("starting TorchServe '%s'", name)
            server = TorchServe(folder / name, venv, store, *TS_FRONTENDS[name])
            stack.callback(server.stop)
            server.start()
            servers[name], targets[name] = server, (server.url, server.processes)
            args.ts_configs[name] = server.config_text
        for name, server in servers.items():
            check_answers(server, name)
            check_errors(server.url, name)
        log.info("all 1023 answers right and bad requests refused on each; warming up (%d s each)", args.warmup)
        for url, _ in targets.values():
            load_generator.run_wrk(url, 64, args.warmup, args.wrk_threads, wrk_log)
        for round_number in range(1, args.rounds + 1):
            order = list(servers) if round_number % 2 else list(reversed(servers))
            for connections in args.connections:
                for name in order:
                    url, processes = targets[name]
                    run = timed_run(
                        name, processes, url, connections, args.duration, round_number, wrk_log, args.wrk_threads
                    )
                    log.info(
                        "round %d c=%-3d %-14s %8.0f req/s  p99 %.2f ms  CPU %.1f us/req (frontend %.1f, workers %.1f)",
                        round_number,
                        connections,
                        name,
                        run.per_second,
                        run.p99_ms,
                        run.all_us,
                        run.frontend_us,
                        run.workers_us,
                    )
                    runs.append(run)
    return runs


def median_of(runs: list[Run], name: str, connections: int, key: str) -> float:
    return statistics.median(getattr(r, key) for r in runs if r.server == name and r.connections == connections)


def paired(runs: list[Run], connections: int, key: str, other: str) -> list[float]:
    """MMS / `other` of the same round (they ran back to back), per round."""
    by = {(r.server, r.round): getattr(r, key) for r in runs if r.connections == connections}
    return [by[("mms", n)] / by[(other, n)] for n in sorted({r.round for r in runs})]


def best_torchserve(runs: list[Run], connections: int, names: list[str]) -> str:
    """The TorchServe configuration with the higher median req/s at `connections`."""
    return max(names, key=lambda name: median_of(runs, name, connections, "per_second"))


def versions(venv: Path) -> str:
    code = "import importlib.metadata as m; print(', '.join(p + ' ' + m.version(p) for p in ('torchserve', 'torch')))"
    try:
        done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60)
        theirs = done.stdout.strip() or done.stderr.strip()[-200:]
    except (OSError, subprocess.SubprocessError) as error:
        theirs = f"not readable ({error})"
    mine = f"mxnet-model-server {version('mxnet-model-server')}, mxnet {version('mxnet')}"
    machine = dict(describe())
    return f"{mine}; TorchServe's venv: {theirs}; Java: {machine['Java']}; wrk: {machine['wrk']}"


def report(args, runs: list[Run]) -> str:
    lines = [
        "# MMS as shipped vs TorchServe 0.12, side by side",
        "",
        f"One run of `{' '.join(['python -m bench.torchserve', *args.argv])}`: {args.rounds} interleaved rounds "
        f"(order flipped each round) of {args.duration} s of wrk ({args.wrk_threads} threads, "
        f"bench/post_inputs.lua) per point, straight to each server, after {args.warmup} s of warm-up each. "
        f"All batch {BATCH_SIZE} requests for at most {MAX_BATCH_DELAY_MS} ms over {WORKERS} workers and answered "
        "all 1023 inputs right (and refused bad bodies with a 400 JSON error) first. CPU per request is read "
        "from /proc while wrk ran: user + system of every process of the server (the Java frontend, the "
        "workers, and MMS's metrics exporter or TorchServe's launcher), divided by the answered requests. "
        "The machine is shared with other jobs: compare within this run (the paired ratios), not with "
        "other runs.",
        "",
        f"Versions: {versions(ts_venv())}.",
        "",
        "| c | server | median req/s | rounds | median p99 ms | CPU µs/req (all) | frontend | workers |",
        "|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for c in args.connections:
        for name in ["mms", *args.torchserve]:
            rounds = ", ".join(f"{r.per_second:,.0f}" for r in runs if r.server == name and r.connections == c)
            lines.append(
                f"| {c} | {LABELS[name]} | {median_of(runs, name, c, 'per_second'):,.0f} | {rounds} | "
                f"{median_of(runs, name, c, 'p99_ms'):.2f} | {median_of(runs, name, c, 'all_us'):.1f} | "
                f"{median_of(runs, name, c, 'frontend_us'):.1f} | {median_of(runs, name, c, 'workers_us'):.1f} |"
            )
    lines += [
        "",
        "MMS / each TorchServe configuration, paired within each round (median, and each round): above 1 "
        "for req/s, below 1 for p99 and CPU per request is MMS ahead; **best** marks TorchServe's "
        "configuration with the higher median req/s at that concurrency, the one that counts. Issue 25 "
        "aims at 1.5x its req/s.",
        "",
        "| c | MMS / | req/s | p99 | CPU per request (all) |",
        "|---:|---|---|---|---|",
    ]
    for c in args.connections:
        best = best_torchserve(runs, c, args.torchserve)
        for name in args.torchserve:
            cells = []
            for key in ("per_second", "p99_ms", "all_us"):
                ratios = paired(runs, c, key, name)
                cells.append(f"**{statistics.median(ratios):.2f}x** ({', '.join(f'{x:.2f}' for x in ratios)})")
            mark = " (**best**)" if name == best and len(args.torchserve) > 1 else ""
            lines.append(f"| {c} | {name}{mark} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "TorchServe's config.properties in this run, each (the model store and ports were temporary; the "
        "launcher ran with `--ncs --disable-token-auth --log-config bench/torchserve/log4j2.xml` and "
        "`OMP_NUM_THREADS=1`). Its worker still writes a `Backend received inference` line and a "
        "`[METRICS]PredictionTime` line per batch to its stdout, which the frontend reads and drops "
        "(below WARN) or parses: TorchServe 0.12 has no setting to turn either off.",
    ]
    for name, text in args.ts_configs.items():
        lines += ["", f"`{name}`:", "", "```properties", text.rstrip(), "```"]
    return write_report(lines, args.output / "torchserve.md", args.load_before)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    load_generator.add_round_arguments(parser, (16, 64), "untimed seconds of c=64 per server first")
    parser.add_argument(
        "--torchserve",
        type=lambda text: text.split(","),
        default=list(TS_FRONTENDS),
        help=f"TorchServe configurations to run, comma-separated, of {', '.join(TS_FRONTENDS)} (default: all)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="default %(default)s")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 1 or not args.connections or min(args.connections) < 1:
        parser.error("rounds, duration, warm-up and connections must be positive")
    unknown = set(args.torchserve) - set(TS_FRONTENDS)
    if unknown or not args.torchserve or len(set(args.torchserve)) != len(args.torchserve):
        parser.error(f"--torchserve takes distinct names of {', '.join(TS_FRONTENDS)}")
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def main(argv=None):
    logs.setup("progress")
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]
    args.output.mkdir(parents=True, exist_ok=True)
    errors = (LifecycleError, subprocess.SubprocessError)
    runs = load_generator.measure_in_temp("torchserve", "fbz-ts-bench-", lambda folder: measure(args, folder), errors)
    if runs is None:
        return 1
    print(report(args, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
