"""Serve the ONNX graph in netron on loopback, on a port that cannot collide with MMS.

  inspection/inspect_model.sh [serve] [MODEL]  serve MODEL in the foreground; Ctrl-C stops it
  inspection/inspect_model.sh start [MODEL]    serve in the background; prints the URL and PID
  inspection/inspect_model.sh stop             stop the background server (by its PID file)
  inspection/inspect_model.sh status           say whether it runs, and where
  inspection/inspect_model.sh -h

Runs netron (pinned in requirements-dev.txt) on MODEL (default: fizbuz_package/fizbuz.onnx),
waits until its page and the model answer over HTTP, and prints the URL to open. netron's
own default port is 8080, MMS's inference port, so this never uses it. No browser is
needed: open the URL from anywhere that reaches it (e.g. ssh -L 8090:127.0.0.1:8090).

Environment (defaults in brackets; the old names without FIZBUZ_ still work):
  FIZBUZ_NETRON_HOST      [127.0.0.1]  address to listen on
  FIZBUZ_NETRON_PORT      [8090]       port; must be free and not MMS's (FIZBUZ_INFERENCE_PORT/_MANAGEMENT_PORT)
  FIZBUZ_NETRON_TIMEOUT   [30]         seconds to wait for netron to answer
  FIZBUZ_NETRON_BROWSE    [0]          1 also opens a browser, when a display (DISPLAY/WAYLAND_DISPLAY) exists
  FIZBUZ_RUN_DIR          [run]        where netron.pid and netron.log go
  FIZBUZ_INFERENCE_PORT   [8080], FIZBUZ_MANAGEMENT_PORT [8081]  MMS's ports, refused as netron's
"""

import argparse
import contextlib
import importlib.metadata
import logging
import os
import re
import signal
import sys
import webbrowser
from pathlib import Path

import psutil

from fizbuz import settings
from fizbuz.contract import ONNX_PATH
from fizbuz.http_client import call
from fizbuz.lifecycle import LifecycleError, PidFile, check_port_free, end_family, start_server
from fizbuz import logs

PROG = "inspect_model.sh"
MODES = ("serve", "start", "stop", "status")
# Signals that end the foreground mode. Installed explicitly with signal.signal,
# which (unlike a bash trap) also works when the caller started us with SIGINT
# ignored, as a background job of a non-interactive shell does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

log = logging.getLogger("netron")


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by a stop signal (Ctrl-C, TERM, HUP). A
    KeyboardInterrupt, so start_server stops a half-started netron on it."""


class Settings:
    def __init__(self, env=os.environ):
        self.host = settings.value("netron_host", env)
        self.port_text = settings.value("netron_port", env)
        self.timeout = settings.value("netron_timeout", env)
        self.browse = settings.value("netron_browse", env)
        self.display = bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
        self.mms_ports = (str(settings.value("inference_port", env)), str(settings.value("management_port", env)))
        self.run_dir = settings.value("run_dir", env)
        self.pid_file = PidFile(self.run_dir / "netron.pid", "netron")
        self.log_file = self.run_dir / "netron.log"

    @property
    def port(self):
        if not re.fullmatch(r"[0-9]+", self.port_text) or not 1 <= int(self.port_text) <= 65535:
            raise LifecycleError(f"NETRON_PORT must be a port number, got '{self.port_text}'")
        if self.port_text in self.mms_ports:
            raise LifecycleError(
                f"NETRON_PORT={self.port_text} is an MMS port (8080 inference, 8081 management); pick another"
            )
        return int(self.port_text)

    @property
    def url(self):
        return f"http://{self.host}:{self.port_text}/"

    def serving_line(self):
        """netron's own 'Serving ... at URL' line from its log, for status reports."""
        try:
            found = re.findall(r"Serving.*", self.log_file.read_text(errors="replace"))
        except FileNotFoundError:
            return ""
        return found[-1] if found else ""


def answers(url):
    status, _ = call("GET", url, timeout=2)
    return status == 200


def launch(settings, model):
    """Start netron in its own session, wait until page and model answer; returns its process."""
    if not model.is_file():
        raise LifecycleError(f"no model at {model}: run '.venv/bin/python export_onnx.py' first")
    model = model.resolve()
    port = settings.port
    check_port_free(port, "netron", host=settings.host, hint=" with NETRON_PORT=")
    netron = Path(sys.executable).parent / "netron"
    if not netron.exists():
        raise LifecycleError(f"netron is not installed in {netron.parent.parent}: run scripts/setup_env.sh --dev")
    log.info("serving %s with netron %s", model, importlib.metadata.version("netron"))
    model_url = f"{settings.url}data/{model.name}"
    process = start_server(
        [netron, "--host", settings.host, "--port", port, model],
        settings.pid_file,
        settings.log_file,
        ready=lambda: answers(settings.url) and answers(model_url),
        what=f"netron to answer at {settings.url}",
        timeout=settings.timeout,
    )
    print(f"netron is ready: {settings.url}  (pid {process.pid})", flush=True)
    if settings.browse:
        if not settings.display:
            print(f"no display here: open {settings.url} in a browser that can reach this machine")
        elif not webbrowser.open_new_tab(settings.url):
            print(f"could not open a browser; open {settings.url} yourself")
    return process


def already_running(settings):
    process = settings.pid_file.process()
    if process is None and settings.pid_file.is_stale():
        settings.pid_file.remove()  # a crashed netron's leftover
    return process


def ignore_stop_signals():
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def raise_interrupted(signum, frame):
    ignore_stop_signals()  # a second Ctrl-C must not cut the clean-up short
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def end_own_netron():
    """Stop a netron this process started, found as its child rather than by the
    pid file: a signal can land after the start and before the pid is written."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "netron" in " ".join(child.cmdline()):
                end_family(child, grace=5)


def serve(settings, model):
    running = already_running(settings)
    if running is not None:
        raise LifecycleError(f"netron already runs in the background (pid {running.pid}); '{PROG} stop' first")
    process = code = None
    try:
        process = launch(settings, model)
        print("Ctrl-C stops it.", flush=True)
        code = process.wait()  # returns only when netron ends by itself or by 'stop' from elsewhere
    except Interrupted:
        pass  # the normal way out: stop netron below
    finally:
        ignore_stop_signals()
        settings.pid_file.stop(grace=10)
        end_own_netron()
        if process is not None:
            log.info("netron stopped")
    if code:
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
        raise LifecycleError(f"netron exited with status {code} (log: {settings.log_file})")
    return 0


def start(settings, model):
    running = already_running(settings)
    if running is not None:
        print(f"netron already runs: pid {running.pid}; {settings.serving_line()}")
        return 0
    process = launch(settings, model)
    print(f"stop it with: {PROG} stop   (or: kill {process.pid})")
    return 0


def stop(settings, model=None):
    pid = settings.pid_file.stop(grace=10)
    if pid is None:
        print("netron is not running")
    else:
        log.info("stopped netron (pid %d)", pid)
    return 0


def status(settings, model=None):
    running = already_running(settings)
    if running is None:
        print("netron is not running")
        return 1
    print(f"netron runs: pid {running.pid}; {settings.serving_line()}")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        usage="%(prog)s [-h] [MODE] [MODEL]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words", nargs="*", metavar="[MODE] [MODEL]", help=f"MODE is one of {', '.join(MODES)}")
    args = parser.parse_args(argv)
    words = list(args.words)
    mode = words.pop(0) if words and words[0] in MODES else "serve"
    if len(words) > 1 or (words and mode in ("stop", "status")):
        parser.error(f"unexpected arguments: {' '.join(words)}")
    return mode, Path(words[0]) if words else ONNX_PATH


def main(argv=None):
    # First thing, so no Ctrl-C can fall between a started netron and the
    # handler that stops it.
    for signum in STOP_SIGNALS:
        signal.signal(signum, raise_interrupted)
    try:
        mode, model = parse_args(argv)
        logs.setup("progress")
        return {"serve": serve, "start": start, "stop": stop, "status": status}[mode](Settings(), model)
    except (LifecycleError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except Interrupted:
        end_own_netron()  # a start cut short
        return 130


if __name__ == "__main__":
    sys.exit(main())
