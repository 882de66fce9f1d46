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
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

from processes import end_family

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "fizbuz_package"
PID_FILE_NAME = ".model_server.pid"  # MMS writes it to $TMPDIR
STATE_FILE_NAME = "server.json"
# MMS 1.0.8's frontend rejects any port from 32767 up ("Invalid port number").
MAX_PORT = 32766

DEFAULTS = {
    "inference_port": 8080,
    "management_port": 8081,
    "batch_size": 16,
    "max_batch_delay": 1,
    "workers": 2,
    "max_workers": 16,
}


class ControlError(Exception):
    """A failure the user can act on; printed without a traceback."""


def say(message):
    print(f"==> {message}", flush=True)


# --------------------------------------------------------------------------- paths

class RunFolder:
    """Where one server's runtime files live."""

    def __init__(self, path):
        self.path = Path(path).resolve()
        self.tmp = self.path / "tmp"
        self.logs = self.path / "logs"
        self.pid_file = self.tmp / PID_FILE_NAME
        self.state_file = self.path / STATE_FILE_NAME
        self.config = self.path / "config.properties"
        self.log_config = self.path / "log4j.properties"
        self.console_log = self.logs / "mms_console.log"

    def create(self):
        for folder in (self.path, self.tmp, self.logs):
            folder.mkdir(parents=True, exist_ok=True)

    def remove_sockets(self):
        for sock in self.tmp.glob(".mms.sock.*"):
            sock.unlink(missing_ok=True)

    def read_pid(self):
        try:
            return int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def read_state(self):
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}


def server_process(pid):
    """The live MMS frontend with this pid, or None (gone, or pid reused by another program)."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if "com.amazonaws.ml.mms.ModelServer" not in " ".join(process.cmdline()):
            return None
        return process
    except psutil.Error:
        return None


# --------------------------------------------------------------------------- HTTP

def http(method, url, timeout=10.0, body=None, headers=None, cafile=None):
    """Returns (status, text); (None, reason) when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        return None, str(getattr(error, "reason", error))


def management_url(port, path):
    return f"http://127.0.0.1:{port}{path}"


def describe_model(management_port, timeout=10.0):
    status, text = http("GET", management_url(management_port, f"/models/{MODEL_NAME}"), timeout)
    if status != 200:
        return None
    described = json.loads(text)
    # MMS 1.0.8 answers with an object; later versions with a list of them.
    return described[0] if isinstance(described, list) else described


def ready_workers(description):
    return [w for w in (description or {}).get("workers", []) if w.get("status") == "READY"]


def wait_until(condition, timeout, what, interval=0.1, alive=None):
    """Poll `condition` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if alive is not None and not alive():
            raise ControlError(f"the server exited while waiting for {what}")
        if time.monotonic() >= deadline:
            raise ControlError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)  # a poll interval, not a readiness guess


def inference_url(port, tls, address="127.0.0.1"):
    return f"{'https' if tls else 'http'}://{address}:{port}/predictions/{MODEL_NAME}"


def predict(inference_port, number, timeout=10.0, cafile=None, address="127.0.0.1"):
    body = json.dumps({"input.1": number}).encode()
    return http("POST", inference_url(inference_port, cafile, address), timeout,
                body, {"Content-Type": "application/json"}, cafile=cafile)


# --------------------------------------------------------------------------- config files

def write_config(run, inference_port, management_port, tls=None, template=ROOT / "config.properties",
                 inference_address="127.0.0.1"):
    """Copy config.properties with the addresses pointing at the chosen ports;
    with tls=(certificate, key) the inference API speaks HTTPS. The management
    API always stays on loopback (MMS 1.0.8 has no auth)."""
    scheme = "https" if tls else "http"
    lines = []
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "inference_address":
            line = f"inference_address={scheme}://{inference_address}:{inference_port}"
        elif key == "management_address":
            line = f"management_address=http://127.0.0.1:{management_port}"
        lines.append(line)
    if tls:
        lines += [f"certificate_file={tls[0]}", f"private_key_file={tls[1]}"]
    run.config.write_text("\n".join(lines) + "\n")


def tls_files(run, certificate=None, key=None):
    """The PEM certificate and key for HTTPS: the given ones, or a self-signed
    pair made once per run folder. MMS must be given them: Netty's own
    self-signed fallback needs BouncyCastle and fails on Java 17."""
    if certificate or key:
        if not (certificate and key and Path(certificate).is_file() and Path(key).is_file()):
            raise ControlError("TLS_CERT and TLS_KEY must both name existing PEM files")
        return Path(certificate).resolve(), Path(key).resolve()
    folder = run.path / "tls"
    certificate, key = folder / "cert.pem", folder / "key.pem"
    if not (certificate.is_file() and key.is_file()):
        if shutil.which("openssl") is None:
            raise ControlError("openssl is needed to make a TLS certificate (apt-get install -y openssl), "
                               "or give your own with TLS_CERT and TLS_KEY")
        folder.mkdir(parents=True, exist_ok=True)
        say(f"making a self-signed certificate for 127.0.0.1 in {folder}")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                        "-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        key.chmod(0o600)
    return certificate, key


def write_log_config(run, access_log, template=ROOT / "log4j.properties"):
    text = template.read_text()
    text = text.replace("${LOG_LOCATION}", str(run.logs)).replace("${METRICS_LOCATION}", str(run.logs))
    for name, verbose, quiet in (("ACCESS_LOG_LEVEL", "INFO", "OFF"), ("PER_REQUEST_LOGS", "true", "false"),
                                 ("WORKER_THREAD_LEVEL", "INFO", "WARN")):
        text = text.replace("${%s}" % name, verbose if access_log else quiet)
    run.log_config.write_text(text)


# --------------------------------------------------------------------------- start

def check_port_free(port, what, address="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            raise ControlError(
                f"port {port} ({what}) cannot be bound on {address} ({error.strerror}): stop what listens there, "
                f"or choose another port (INFERENCE_PORT / MANAGEMENT_PORT)")


def clean_stale(run):
    """After a crash (kill -9 of the frontend), remove what the dead server left."""
    pid = run.read_pid()
    say(f"found a stale pid file (pid {pid} is not running): cleaning up after the crashed server")
    for process in worker_processes(run).values():  # orphaned workers of that server
        try:
            process.kill()
        except psutil.Error:
            pass
    run.pid_file.unlink(missing_ok=True)
    run.remove_sockets()


def tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def start(args):
    run = RunFolder(args.run_dir)
    run.create()
    model_store = Path(args.model_store).resolve()
    mar = model_store / f"{MODEL_NAME}.mar"

    existing = server_process(run.read_pid())
    if existing is not None:
        state = run.read_state()
        description = describe_model(state.get("management_port", args.management_port))
        if ready_workers(description):
            say(f"MMS is already running from {run.path} (pid {existing.pid}) with "
                f"{len(ready_workers(description))} READY workers; "
                f"'./start_mms.sh stop' first to restart it with new settings")
            print_usage_hint(state.get("inference_port", args.inference_port), run,
                             state.get("tls_certificate"), state.get("inference_address", "127.0.0.1"))
            return 0
        raise ControlError(f"an MMS from {run.path} is running (pid {existing.pid}) but its model has "
                           f"no READY worker: run './start_mms.sh stop' and start again")
    if run.pid_file.exists():
        clean_stale(run)

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ControlError("Java was not found: MMS needs a Java runtime "
                           "(Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)")
    if not mar.is_file():
        raise ControlError(f"{mar} does not exist: run ./build_mar.sh")
    for port in (args.inference_port, args.management_port):
        if not 1 <= port <= MAX_PORT:
            raise ControlError(f"port {port} is out of range: MMS 1.0.8 only accepts ports 1..{MAX_PORT}")
    if args.inference_port == args.management_port:
        raise ControlError("the inference and management ports must differ")
    check_port_free(args.inference_port, "inference API", args.inference_address)
    check_port_free(args.management_port, "management API")

    tls = tls_files(run, args.tls_cert, args.tls_key) if args.tls else None
    write_config(run, args.inference_port, args.management_port, tls,
                 inference_address=args.inference_address)
    write_log_config(run, args.access_log)
    env = dict(os.environ, TMPDIR=str(run.tmp), TEMP=str(run.tmp),
               LOG_LOCATION=str(run.logs), METRICS_LOCATION=str(run.logs))
    launcher = Path(sys.executable).parent / "mxnet-model-server"
    command = [str(launcher), "--start", "--mms-config", str(run.config),
               "--model-store", str(model_store), "--log-config", str(run.log_config)]
    say(f"starting MMS: inference on {args.inference_address}:{args.inference_port}, "
        f"management on 127.0.0.1:{args.management_port}, run folder {run.path}")
    with open(run.console_log, "ab") as console:
        launched = subprocess.run(command, cwd=run.path, env=env, stdout=console,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
    if launched.returncode != 0:
        raise ControlError(f"mxnet-model-server --start failed:\n{tail(run.console_log)}")
    process = server_process(run.read_pid())
    if process is None:
        raise ControlError(f"MMS did not stay up; its console says:\n{tail(run.console_log)}")
    run.state_file.write_text(json.dumps({
        "pid": process.pid, "inference_port": args.inference_port,
        "inference_address": args.inference_address,
        "tls_certificate": str(tls[0]) if tls else None,
        "management_port": args.management_port, "batch_size": args.batch_size,
        "max_batch_delay": args.max_batch_delay, "workers": args.workers}, indent=2))

    try:
        register_and_wait(args, run, process, cafile=tls[0] if tls else None)
    except ControlError:
        say("start failed; stopping the half-started server")
        stop_server(run, quiet=True)
        raise
    print_usage_hint(args.inference_port, run, tls[0] if tls else None, args.inference_address)
    return 0


def register_and_wait(args, run, process, cafile=None):
    alive = process.is_running
    wait_until(lambda: http("GET", management_url(args.management_port, "/models"), 2)[0] == 200,
               args.timeout, "the management API", alive=alive)
    query = urllib.parse.urlencode({
        "url": f"{MODEL_NAME}.mar", "model_name": MODEL_NAME,
        "batch_size": args.batch_size, "max_batch_delay": args.max_batch_delay,
        "initial_workers": args.workers, "synchronous": "true",
    })
    say(f"registering {MODEL_NAME}: batch_size={args.batch_size}, "
        f"max_batch_delay={args.max_batch_delay} ms, workers={args.workers}")
    status, text = http("POST", management_url(args.management_port, f"/models?{query}"),
                        timeout=args.timeout)
    if status != 200:
        raise ControlError(f"registering the model failed ({status}): {text.strip()}\n"
                           f"server log:\n{tail(run.logs / 'mms_log.log', 30)}")
    wait_until(lambda: len(ready_workers(describe_model(args.management_port))) >= args.workers,
               args.timeout, f"{args.workers} READY workers", alive=alive)
    status, text = predict(args.inference_port, 14, cafile=cafile, address=args.inference_address)
    if status != 200 or json.loads(text) != {"next_number": "FizzBuzz"}:
        raise ControlError(f"the smoke prediction failed ({status}): {text.strip()}")
    say(f"model {MODEL_NAME} is serving with {args.workers} READY workers (pid {process.pid})")


def print_usage_hint(inference_port, run, cafile=None, address="127.0.0.1"):
    curl = f"curl --cacert {cafile}" if cafile else "curl"
    print(f"""
Try it:
  {curl} -X POST {inference_url(inference_port, cafile, address)} \\
       -H 'Content-Type: application/json' -d '{{"input.1": 14}}'
  -> {{"next_number": "FizzBuzz"}}
Scale:  ./scale_workers.sh 3
Logs:   {run.logs}
Stop:   ./start_mms.sh stop
""", flush=True)


# --------------------------------------------------------------------------- stop / status / scale

def stop_server(run, quiet=False, timeout=20.0):
    """Stop the server whose pid file is in this run folder, with all its workers."""
    pid = run.read_pid()
    process = server_process(pid)
    if process is None:
        if run.pid_file.exists():
            clean_stale(run)
        if not quiet:
            say(f"no MMS is running from {run.path}")
        run.state_file.unlink(missing_ok=True)
        return 0
    workers = end_family(process, grace=timeout)
    run.pid_file.unlink(missing_ok=True)
    run.state_file.unlink(missing_ok=True)
    run.remove_sockets()
    say(f"stopped MMS (pid {process.pid}) and {workers} worker process(es)")
    return 0


def management_port_for(args, run):
    if args.management_port is not None:
        return args.management_port
    if os.environ.get("MANAGEMENT_PORT"):
        return env_int("MANAGEMENT_PORT", None)
    return run.read_state().get("management_port", DEFAULTS["management_port"])


def worker_processes(run):
    """{worker id: psutil.Process} for this run folder's workers (MMS 1.0.8 does
    not report their pids; each worker's socket path ends in its id)."""
    found = {}
    marker = str(run.tmp / ".mms.sock.")
    for process in psutil.process_iter(["cmdline"]):
        for word in process.info["cmdline"] or []:
            if word.startswith(marker):
                found[word[len(marker):]] = process
    return found


def worker_table(description, run):
    processes = worker_processes(run)
    rows = [f"{'worker':<8} {'status':<10} {'pid':>8} {'RSS MB':>8}"]
    for worker in description.get("workers", []):
        process = processes.get(str(worker.get("id")))
        try:
            pid, rss = str(process.pid), f"{process.memory_info().rss / 2**20:.1f}"
        except (AttributeError, psutil.Error):
            pid, rss = "-", "-"
        rows.append(f"{worker.get('id', '?'):<8} {worker.get('status', '?'):<10} {pid:>8} {rss:>8}")
    return "\n".join(rows)


def require_description(port):
    description = describe_model(port)
    if description is None:
        raise ControlError(f"no MMS with model {MODEL_NAME} answers on management port {port}: "
                           f"start it with ./start_mms.sh")
    return description


def status(args):
    run = RunFolder(args.run_dir)
    port = management_port_for(args, run)
    description = require_description(port)
    print(f"model {description.get('modelName', MODEL_NAME)}: batch_size={description.get('batchSize')} "
          f"max_batch_delay={description.get('maxBatchDelay')} ms "
          f"min_worker={description.get('minWorkers')} max_worker={description.get('maxWorkers')}")
    print(worker_table(description, run))
    return 0


def scale(args):
    run = RunFolder(args.run_dir)
    low, high = args.min_workers, args.max_workers if args.max_workers is not None else args.min_workers
    if not 1 <= low <= high <= DEFAULTS["max_workers"]:
        raise ControlError(f"need 1 <= MIN <= MAX <= {DEFAULTS['max_workers']}, got MIN={low} MAX={high}")
    port = management_port_for(args, run)
    require_description(port)
    query = urllib.parse.urlencode({"min_worker": low, "max_worker": high, "synchronous": "true"})
    say(f"scaling {MODEL_NAME} to min_worker={low} max_worker={high}")
    code, text = http("PUT", management_url(port, f"/models/{MODEL_NAME}?{query}"), timeout=args.timeout)
    if code != 200:
        raise ControlError(f"scaling failed ({code}): {text.strip()}")
    def settled():
        # Every worker READY and their number within the new bounds.
        description = describe_model(port)
        if description is None:
            return None
        count = len(description.get("workers", []))
        return description if low <= count <= high and len(ready_workers(description)) == count else None

    description = wait_until(settled, args.timeout, f"{low}..{high} READY workers")
    state = run.read_state()
    if state:
        state["workers"] = low
        run.state_file.write_text(json.dumps(state, indent=2))
    print(worker_table(description, run))
    return 0


# --------------------------------------------------------------------------- CLI

def env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ControlError(f"{name} must be a whole number, got {value!r}")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default=os.environ.get("FIZBUZ_RUN_DIR", str(ROOT / "run")),
                        help="the server's run folder (env FIZBUZ_RUN_DIR, default: ./run)")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("MMS_TIMEOUT", 120)),
                        help="seconds to wait for each step (env MMS_TIMEOUT, default: 120)")
    commands = parser.add_subparsers(dest="command", required=True)

    start_cmd = commands.add_parser("start", help="start MMS and register the model")
    start_cmd.add_argument("--inference-port", type=positive_int,
                           default=env_int("INFERENCE_PORT", DEFAULTS["inference_port"]))
    start_cmd.add_argument("--inference-address", default=os.environ.get("INFERENCE_ADDRESS", "127.0.0.1"),
                           help="address the predictions API binds to (env INFERENCE_ADDRESS, default "
                                "127.0.0.1); the management API always stays on 127.0.0.1")
    start_cmd.add_argument("--management-port", type=positive_int,
                           default=env_int("MANAGEMENT_PORT", DEFAULTS["management_port"]))
    start_cmd.add_argument("--model-store", default=os.environ.get("MODEL_STORE", str(ROOT / "model_store")))
    start_cmd.add_argument("--batch-size", type=positive_int,
                           default=env_int("BATCH_SIZE", DEFAULTS["batch_size"]))
    start_cmd.add_argument("--max-batch-delay", type=positive_int,
                           default=env_int("MAX_BATCH_DELAY", DEFAULTS["max_batch_delay"]))
    start_cmd.add_argument("--workers", type=positive_int, default=env_int("WORKERS", DEFAULTS["workers"]))
    start_cmd.add_argument("--access-log", action="store_true",
                           default=os.environ.get("ACCESS_LOG", "") not in ("", "0", "false"),
                           help="write the access log and per-request/per-batch log lines "
                                "(costs throughput; env ACCESS_LOG=1)")
    start_cmd.add_argument("--tls", action="store_true",
                           default=os.environ.get("TLS", "") not in ("", "0", "false"),
                           help="serve predictions over HTTPS (env TLS=1)")
    start_cmd.add_argument("--tls-cert", default=os.environ.get("TLS_CERT"),
                           help="PEM certificate (env TLS_CERT; default: a self-signed one)")
    start_cmd.add_argument("--tls-key", default=os.environ.get("TLS_KEY"),
                           help="PEM private key, PKCS#8 (env TLS_KEY)")
    start_cmd.set_defaults(func=start)

    stop_cmd = commands.add_parser("stop", help="stop the server of this run folder")
    stop_cmd.set_defaults(func=lambda args: stop_server(RunFolder(args.run_dir)))

    for name, func, helptext in (("status", status, "print the model's settings and workers"),
                                 ("scale", scale, "set min/max workers and wait for them")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--management-port", type=positive_int, default=None,
                         help="default: env MANAGEMENT_PORT, else the port the run folder's server uses")
        if name == "scale":
            sub.add_argument("min_workers", type=positive_int, metavar="MIN")
            sub.add_argument("max_workers", type=positive_int, metavar="MAX", nargs="?")
        sub.set_defaults(func=func)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        if args.command == "start":
            if not 1 <= args.batch_size <= 256:
                raise ControlError(f"batch size must be 1..256, got {args.batch_size}")
            if not 1 <= args.workers <= DEFAULTS["max_workers"]:
                raise ControlError(f"workers must be 1..{DEFAULTS['max_workers']}, got {args.workers}")
        return args.func(args)
    except ControlError as error:
        print(f"mms_control: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
