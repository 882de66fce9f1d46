#!/usr/bin/env python3
"""Start, register, scale, inspect and stop this project's MXNet Model Server.

Every server it starts lives in its own run folder (default ./run): TMPDIR and
TEMP (so MMS's pid file, worker sockets and unpacked models stay there), the
generated config.properties and log4j.properties, and logs/. It only ever
stops the server whose pid file is in that folder, so a server someone else
runs on this machine is never touched.

Readiness is "every worker of the model is READY" plus one real prediction:
MMS 1.0.8 answers GET /ping with 200 even when no worker can serve.
"""

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import psutil

import fizbuz_metrics
from fizbuz import answers
from fizbuz.contract import (
    INPUT_KEY,
    MAR_FILE_NAME,
    MAX_INPUT,
    MIN_INPUT,
    MODEL_NAME,
    SINGLE_MODEL_NAME,
    SINGLE_PREDICT_PATH,
)
from fizbuz.http_client import answers_smoke_request, predict, predict_url
from fizbuz.lifecycle import LifecycleError, check_port_free, tail, wait_until
from serving.mms.metrics import control as metrics_control
from serving.mms.metrics import multiproc
from serving.mms import config, fast_worker, guard, management, process
from serving.mms.process import RunFolder
from fizbuz import logs, settings, users
from fizbuz.errors import FizbuzError

# Holds only sitecustomize.py, which applies fast_worker.py in MMS's workers.
WORKER_BOOT = Path(__file__).resolve().parent / "worker_boot"
# MMS 1.0.8's frontend rejects any port from 32767 up ("Invalid port number").
MAX_PORT = 32766

# The defaults live in the one settings table (fizbuz/settings.py).
DEFAULTS = {
    key: settings.default(key)
    for key in (
        "inference_address",
        "inference_port",
        "management_port",
        "batch_size",
        "max_batch_delay",
        "workers",
        "single_workers",
        "metrics_port",
    )
}
DEFAULTS["max_workers"] = int(settings.BY_KEY["workers"].high)

log = logging.getLogger("mms")


# --------------------------------------------------------------------------- start


def start(args):
    run = RunFolder(args.run_dir)
    run.create()
    model_store = Path(args.model_store).resolve()
    mar = model_store / MAR_FILE_NAME

    existing = run.server()
    if existing is not None:
        state = run.read_state()
        ready = management.ready_workers(management.describe_model(state.get("management_port", args.management_port)))
        if ready:
            revive_exporter(run, state, args.timeout)
            log.info(
                "MMS is already running from %s (pid %d) with %d READY workers; "
                "'./start_mms.sh stop' first to restart it with new settings",
                run.path,
                existing.pid,
                len(ready),
            )
            print_usage_hint(
                state.get("inference_port", args.inference_port),
                run,
                state.get("tls_certificate"),
                state.get("inference_address", "127.0.0.1"),
                state.get("metrics_port"),
            )
            return 0
        raise LifecycleError(
            f"an MMS from {run.path} is running (pid {existing.pid}) but its model has "
            f"no READY worker: run './start_mms.sh stop' and start again"
        )
    if run.pid_file.path.exists():
        process.clean_stale(run)
    metrics_control.stop(run)  # an exporter left behind by a crashed server of this folder

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise LifecycleError(
            "Java was not found: MMS needs a Java runtime (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)"
        )
    if not mar.is_file():
        raise LifecycleError(f"{mar} does not exist: run ./build_mar.sh")
    for port in (args.inference_port, args.management_port):
        if not 1 <= port <= MAX_PORT:
            raise LifecycleError(f"port {port} is out of range: MMS 1.0.8 only accepts ports 1..{MAX_PORT}")
    if args.inference_port == args.management_port:
        raise LifecycleError("the inference and management ports must differ")
    hint = " (INFERENCE_PORT / MANAGEMENT_PORT)"
    check_port_free(args.inference_port, "inference API", args.inference_address, hint)
    check_port_free(args.management_port, "management API", "127.0.0.1", hint)
    if args.metrics:
        if args.metrics_port in (args.inference_port, args.management_port):
            raise LifecycleError("the metrics port must differ from the inference and management ports")
        check_port_free(args.metrics_port, "metrics exporter", "127.0.0.1", " (METRICS_PORT, or METRICS=0)")

    user = server_user(args.run_as)
    tls = config.tls_files(run.tls, args.tls_cert, args.tls_key, args.inference_address) if args.tls else None
    config.write_config(run.config, args.inference_port, args.management_port, tls, args.inference_address)
    config.write_log_config(run.log_config, run.logs, args.access_log)
    env = worker_env(args, run)
    if user is not None:
        process.hand_over(
            run,
            user,
            reads=(model_store / MAR_FILE_NAME, WORKER_BOOT, Path(sys.executable).parent),
            writes=[metrics_control.multiproc_dir(run)] if args.metrics else [],
        )
        if tls and tls[1].parent == run.tls:
            os.chown(tls[1], user[1], user[2])  # the self-signed key of this folder: MMS must read it
    log.info(
        "starting MMS%s: inference on %s:%d, management on 127.0.0.1:%d, run folder %s",
        f" as {user[0]}" if user else "",
        args.inference_address,
        args.inference_port,
        args.management_port,
        run.path,
    )
    # Before MMS listens: no moment open to other users.
    guard.close(run.path, args.management_port, server_uid=user[1] if user else None)
    try:
        server = process.launch(run, model_store, env=env, user=user)
    except LifecycleError:
        guard.open_again(run.path)
        raise
    run.write_state(
        {
            "pid": server.pid,
            "inference_address": args.inference_address,
            "inference_port": args.inference_port,
            "management_port": args.management_port,
            "tls_certificate": str(tls[0]) if tls else None,
            "batch_size": args.batch_size,
            "max_batch_delay": args.max_batch_delay,
            "workers": args.workers,
            "single_workers": args.single_workers,
            "fast_protocol": args.fast_protocol,
            "metric_lines": bool(args.model_metrics_log),
            "metrics_port": args.metrics_port if args.metrics else None,
            "run_as": user[0] if user else None,
        }
    )
    try:
        register_and_wait(args, run, server, cafile=tls[0] if tls else None)
        if args.metrics:
            metrics_control.start(run, args.metrics_port, args.management_port, timeout=args.timeout, user=user)
    except LifecycleError:
        log.info("start failed; stopping the half-started server")
        metrics_control.stop(run)
        process.stop(run)
        guard.open_again(run.path)
        raise
    print_usage_hint(
        args.inference_port,
        run,
        tls[0] if tls else None,
        args.inference_address,
        args.metrics_port if args.metrics else None,
    )
    return 0


def revive_exporter(run, state, timeout):
    """A server whose exporter died (kill -9, OOM) gets it back; the workers'
    counters were in their own files all along, so nothing counted is lost."""
    port = state.get("metrics_port")
    if port and metrics_control.pid_file(run).process() is None:
        log.info("the metrics exporter of this server is not running: starting it again")
        metrics_control.start(
            run, port, state["management_port"], timeout=timeout, user=server_user(state.get("run_as"))
        )


def server_user(name):
    """(name, uid, gid) MMS runs as: `name` (FIZBUZ_MMS_RUN_AS) when root
    starts it, made as a system user when missing; None: as its caller."""
    if not name:
        return None
    if os.geteuid() != 0:
        if (users.lookup(name) or (None, None))[1] == os.geteuid():
            return None  # already that user
        raise LifecycleError(f"only root can start MMS as {name} (FIZBUZ_MMS_RUN_AS)")
    user = users.not_root(users.ensure_system_user(name), "MMS runs model code (each archive's handler)")
    # The venv's interpreter and its standard library (a pyenv may sit under /root).
    users.open_way_to(user, Path(sys.executable).resolve(), Path(sys.base_prefix))
    return user


def worker_env(args, run):
    """MMS's environment, which its workers inherit: with metrics on, a fresh
    multiprocess folder in the run folder for the handler's counters (a
    PROMETHEUS_MULTIPROC_DIR inherited from the caller is never used); and
    whether the per-batch lines go to model_metrics.log (the handler's and MMS's
    own); and the worker patch (serving/mms/fast_worker.py), which a sitecustomize
    first on the workers' PYTHONPATH applies. Without the patch (--no-fast-protocol)
    the workers are MMS's as shipped, per-batch PredictionTime lines included."""
    env = run.env()
    env.pop(fizbuz_metrics.MULTIPROC_ENV, None)
    if args.metrics:
        env[fizbuz_metrics.MULTIPROC_ENV] = str(multiproc.prepare(metrics_control.multiproc_dir(run)))
    # One variable for the handler's lines and (through fast_worker) MMS's own.
    env[fizbuz_metrics.LOG_LINES_ENV] = "1" if args.model_metrics_log else "0"
    env[fast_worker.FAST_PROTOCOL_ENV] = "1" if args.fast_protocol else "0"
    if args.fast_protocol:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WORKER_BOOT), env.get("PYTHONPATH")]))
    return env


def register_and_wait(args, run, server, cafile=None):
    alive = server.is_running
    port = args.management_port
    wait_until(lambda: management.answers(port), args.timeout, "the management API", alive=alive)
    log.info(
        "registering %s: batch_size=%d, max_batch_delay=%d ms, workers=%d",
        MODEL_NAME,
        args.batch_size,
        args.max_batch_delay,
        args.workers,
    )
    try:
        management.register(port, args.batch_size, args.max_batch_delay, args.workers, args.timeout)
    except LifecycleError as error:
        raise LifecycleError(f"{error}\nserver log:\n{tail(run.logs / 'mms_log.log', 30)}") from None
    wait_until(
        lambda: len(management.ready_workers(management.describe_model(port))) >= args.workers,
        args.timeout,
        f"{args.workers} READY workers",
        alive=alive,
    )
    url = predict_url(args.inference_port, args.inference_address, tls=bool(cafile))
    if not answers_smoke_request(url, timeout=10, cafile=cafile):
        raise LifecycleError(f"the smoke prediction to {url} failed")
    warm_up(url, args.warmup, cafile)
    log.info("model %s is serving with %d READY workers (pid %d)", MODEL_NAME, args.workers, server.pid)
    if args.single_workers:
        register_single(args, run, alive, cafile)


# A slow model (seconds per batch) must not hold a start for many minutes: after
# the first pass (every input checked once, always), no new pass begins past this.
WARMUP_BUDGET_S = 30.0


def warm_up(url, passes, cafile=None, threads=16, budget_s=WARMUP_BUDGET_S):
    """Every input `passes` times, `threads` at a time, before the server counts as
    ready. A cold Java frontend spends many times its steady CPU per request until
    the JIT has compiled Netty's and MMS's paths (tens of thousands of requests;
    bench/results/mms_path/), so the first clients would meet a slow server; and
    every answer is checked, so "ready" means every input is answered right. The
    first pass always runs whole; later ones only while `budget_s` lasts."""
    if passes < 1:
        return
    numbers = range(MIN_INPUT, MAX_INPUT + 1)
    log.info("warming up: %d requests (%d passes over every input)", passes * len(numbers), passes)
    began, done = time.monotonic(), 0
    while done < passes and (done == 0 or time.monotonic() - began < budget_s):
        wrong = answers.ask_all(lambda number: predict(url, number, 30, cafile), numbers, threads)
        if wrong:
            raise LifecycleError(f"warm-up at {url}: {answers.summary(wrong, len(numbers))}")
        done += 1
    if done < passes:
        log.info("warm-up stopped after %d of %d passes: %.0f s is its budget", done, passes, budget_s)
    log.info("warm-up done: %d answers right", done * len(numbers))


def register_single(args, run, alive, cafile=None):
    """The same archive once more under SINGLE_MODEL_NAME, batch 1 and no delay:
    what a front door sends lone requests to (they are not held for company)."""
    port = args.management_port
    log.info("registering %s: batch_size=1, max_batch_delay=0 ms, workers=%d", SINGLE_MODEL_NAME, args.single_workers)
    try:
        management.register(port, 1, 0, args.single_workers, args.timeout, model=SINGLE_MODEL_NAME)
    except LifecycleError as error:
        raise LifecycleError(f"{error}\nserver log:\n{tail(run.logs / 'mms_log.log', 30)}") from None
    wait_until(
        lambda: (
            len(management.ready_workers(management.describe_model(port, model=SINGLE_MODEL_NAME)))
            >= args.single_workers
        ),
        args.timeout,
        f"{args.single_workers} READY workers of {SINGLE_MODEL_NAME}",
        alive=alive,
    )
    url = predict_url(args.inference_port, args.inference_address, tls=bool(cafile), path=SINGLE_PREDICT_PATH)
    if not answers_smoke_request(url, timeout=10, cafile=cafile):
        raise LifecycleError(f"the smoke prediction to {url} failed")
    log.info("model %s is serving with %d READY workers", SINGLE_MODEL_NAME, args.single_workers)


def print_usage_hint(inference_port, run, cafile=None, address="127.0.0.1", metrics_port=None):
    curl = f"curl --cacert {cafile}" if cafile else "curl"
    metrics = f"Metrics: curl {metrics_control.metrics_url(metrics_port)}\n" if metrics_port else ""
    print(
        f"""
Try it:
  {curl} -X POST {predict_url(inference_port, address, tls=bool(cafile))} \\
       -H 'Content-Type: application/json' -d '{{"{INPUT_KEY}": 14}}'
  -> {{"next_number": "FizzBuzz"}}
Scale:  ./scale_workers.sh 3
{metrics}Logs:   {run.logs}
Stop:   ./start_mms.sh stop
""",
        flush=True,
    )


# --------------------------------------------------------------------------- stop / status / scale


def stop(args):
    run = RunFolder(args.run_dir)
    exporter = metrics_control.stop(run)
    stopped = process.stop(run)
    if guard.open_again(run.path) is not None:
        log.info("deleted the management API's owner-only iptables rule")
    if stopped is None:
        log.info("no MMS is running from %s", run.path)
    else:
        log.info("stopped MMS (pid %d) and %d worker process(es)", *stopped)
    if exporter is not None:
        log.info("stopped the metrics exporter (pid %d)", exporter)
    return 0


def management_port_for(args, run):
    if args.management_port is not None:
        return args.management_port
    if settings.source("management_port"):
        return settings.value("management_port")
    return run.read_state().get("management_port", DEFAULTS["management_port"])


def worker_table(description, run):
    processes = process.worker_processes(run)
    rows = [f"{'worker':<8} {'status':<10} {'pid':>8} {'RSS MB':>8}"]
    for worker in description.get("workers", []):
        found = processes.get(str(worker.get("id")))
        try:
            pid, rss = str(found.pid), f"{found.memory_info().rss / 2**20:.1f}"
        except (AttributeError, psutil.Error):
            pid, rss = "-", "-"
        rows.append(f"{worker.get('id', '?'):<8} {worker.get('status', '?'):<10} {pid:>8} {rss:>8}")
    return "\n".join(rows)


def require_description(port, model=MODEL_NAME):
    description = management.describe_model(port, model=model)
    if description is None:
        hint = "start it with ./start_mms.sh" + (" and FIZBUZ_SINGLE_WORKERS=N" if model == SINGLE_MODEL_NAME else "")
        raise LifecycleError(f"no MMS with model {model} answers on management port {port}: {hint}")
    return description


def status(args):
    run = RunFolder(args.run_dir)
    port = management_port_for(args, run)
    descriptions = [require_description(port)]
    single = management.describe_model(port, model=SINGLE_MODEL_NAME)
    if single is not None:
        descriptions.append(single)
    for description in descriptions:
        print(
            f"model {description.get('modelName', MODEL_NAME)}: batch_size={description.get('batchSize')} "
            f"max_batch_delay={description.get('maxBatchDelay')} ms "
            f"min_worker={description.get('minWorkers')} max_worker={description.get('maxWorkers')}"
        )
        print(worker_table(description, run))
    metrics_port = run.read_state().get("metrics_port")
    if metrics_port:
        print(f"metrics: {metrics_control.metrics_url(metrics_port)}")
    return 0


def scale(args):
    run = RunFolder(args.run_dir)
    low, high = args.min_workers, args.max_workers if args.max_workers is not None else args.min_workers
    if not 1 <= low <= high <= DEFAULTS["max_workers"]:
        raise LifecycleError(f"need 1 <= MIN <= MAX <= {DEFAULTS['max_workers']}, got MIN={low} MAX={high}")
    port = management_port_for(args, run)
    model = SINGLE_MODEL_NAME if args.single else MODEL_NAME
    require_description(port, model)
    log.info("scaling %s to min_worker=%d max_worker=%d", model, low, high)
    management.set_workers(port, low, high, args.timeout, model=model)

    def settled():
        # Every worker READY and their number within the new bounds.
        description = management.describe_model(port, model=model)
        if description is None:
            return None
        count = len(description.get("workers", []))
        return description if low <= count <= high and len(management.ready_workers(description)) == count else None

    description = wait_until(settled, args.timeout, f"{low}..{high} READY workers")
    state = run.read_state()
    if state:
        state["single_workers" if args.single else "workers"] = low
        run.write_state(state)
    print(worker_table(description, run))
    return 0


# --------------------------------------------------------------------------- CLI


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_flag(parser, "run_dir", "--run-dir")
    settings.add_flag(parser, "mms_timeout", "--timeout")
    commands = parser.add_subparsers(dest="command", required=True)

    start_cmd = commands.add_parser("start", help="start MMS and register the model")
    settings.add_flag(start_cmd, "inference_address", "--inference-address")
    settings.add_flag(start_cmd, "inference_port", "--inference-port", type=positive_int)
    settings.add_flag(start_cmd, "management_port", "--management-port", type=positive_int)
    settings.add_flag(start_cmd, "model_store", "--model-store")
    settings.add_flag(start_cmd, "batch_size", "--batch-size", type=positive_int)
    settings.add_flag(start_cmd, "max_batch_delay", "--max-batch-delay", type=positive_int)
    settings.add_flag(start_cmd, "workers", "--workers", type=positive_int)
    settings.add_flag(
        start_cmd,
        "single_workers",
        "--single-workers",
        type=positive_int,
        what=f"also register the model as {SINGLE_MODEL_NAME} (batch 1, no delay) with this many "
        "workers, for a front door that sends lone requests there",
    )
    settings.add_flag(start_cmd, "access_log", "--access-log", action="store_true")
    settings.add_flag(start_cmd, "metrics_port", "--metrics-port", type=positive_int)
    settings.add_flag(
        start_cmd,
        "metrics",
        "--no-metrics",
        dest="metrics",
        action="store_false",
        what="no exporter and no Prometheus counters in the handler",
    )
    settings.add_flag(start_cmd, "model_metrics_log", "--model-metrics-log", choices=(0, 1))
    settings.add_flag(start_cmd, "mms_fast_protocol", "--no-fast-protocol", dest="fast_protocol", action="store_false")
    settings.add_flag(start_cmd, "mms_warmup", "--warmup", dest="warmup", type=int, metavar="PASSES")
    settings.add_flag(start_cmd, "mms_run_as", "--run-as", dest="run_as")
    settings.add_flag(start_cmd, "tls", "--tls", action="store_true")
    settings.add_flag(start_cmd, "tls_cert", "--tls-cert")
    settings.add_flag(start_cmd, "tls_key", "--tls-key")
    start_cmd.set_defaults(func=start)

    stop_cmd = commands.add_parser("stop", help="stop the server of this run folder")
    stop_cmd.set_defaults(func=stop)

    for name, func, helptext in (
        ("status", status, "print the model's settings and workers"),
        ("scale", scale, "set min/max workers and wait for them"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument(
            "--management-port",
            type=positive_int,
            default=None,
            help="default: env FIZBUZ_MANAGEMENT_PORT, else the port the run folder's server uses",
        )
        if name == "scale":
            settings.add_flag(
                sub,
                "scale_single",
                "--single",
                action="store_true",
                what=f"scale {SINGLE_MODEL_NAME} (the batch-1 registration) instead",
            )
            sub.add_argument("min_workers", type=positive_int, metavar="MIN")
            sub.add_argument("max_workers", type=positive_int, metavar="MAX", nargs="?")
        sub.set_defaults(func=func)
    return parser


def validate(args):
    if args.command == "start":
        args.metrics = args.metrics and args.metrics_port != 0
        if args.model_metrics_log is None:
            args.model_metrics_log = 0 if args.metrics else 1
        if not 1 <= args.batch_size <= 256:
            raise LifecycleError(f"batch size must be 1..256, got {args.batch_size}")
        if not 1 <= args.workers <= DEFAULTS["max_workers"]:
            raise LifecycleError(f"workers must be 1..{DEFAULTS['max_workers']}, got {args.workers}")
        if not 0 <= args.warmup <= 100:
            raise LifecycleError(f"warm-up passes must be 0..100, got {args.warmup}")
        if not 0 <= args.single_workers <= DEFAULTS["max_workers"]:
            raise LifecycleError(f"single workers must be 0..{DEFAULTS['max_workers']}, got {args.single_workers}")


def main(argv=None):
    logs.setup("progress")
    try:
        args = build_parser().parse_args(argv)
        validate(args)
        return args.func(args)
    except FizbuzError as error:
        print(f"mms: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
