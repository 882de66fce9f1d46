"""Run wrk with post_inputs.lua against one URL and return its figures."""

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fizbuz.contract import ROOT
from serving.front.nginx import find_nginx
from fizbuz.errors import FizbuzError

LUA_SCRIPT = Path(__file__).resolve().parent / "post_inputs.lua"
SUMMARY_MARKER = "WRK_SUMMARY "


class LoadError(FizbuzError):
    pass


@dataclass
class LoadResult:
    connections: int
    requests: int
    seconds: float
    errors: int  # socket errors + non-2xx/3xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    error_detail: dict

    @property
    def good_per_second(self):
        """Answered requests per second, not counting error statuses."""
        return (self.requests - self.error_detail["status"]) / self.seconds


def wrk_binary():
    return shutil.which("wrk")


FINDERS = {"wrk": wrk_binary, "nginx": find_nginx}


def ensure_tools(*names, allow_install=True, log_file=None):
    """The benches' Debian tools (default: wrk and nginx). The missing ones are
    installed at their pins by scripts/debian_packages.sh (apt-get, root), its
    output in log_file when given; LoadError says what failed and how to fix it."""
    missing = [name for name in names or FINDERS if FINDERS[name]() is None]
    if not missing:
        return
    hint = f"scripts/debian_packages.sh {' '.join(missing)}"
    if not allow_install:
        raise LoadError(f"missing {', '.join(missing)}: run {hint}")
    print(f"==> installing {', '.join(missing)} with apt-get (one time)", flush=True)
    command = [str(ROOT / "scripts" / "debian_packages.sh"), *missing]
    if log_file:
        with open(log_file, "a") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=900).returncode == 0
    else:
        done = subprocess.run(command, timeout=900).returncode == 0
    if not done or any(FINDERS[name]() is None for name in missing):
        raise LoadError(f"could not install {', '.join(missing)} ({hint})" + (f"; see {log_file}" if log_file else ""))


def add_round_arguments(parser, connections, warmup_help):
    """The options every interleaved-rounds wrk bench takes: --rounds, --duration,
    --warmup, --connections (comma-separated, default `connections`), --wrk-threads."""
    parser.add_argument("--rounds", type=int, default=3, help="default %(default)s")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per point (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help=f"{warmup_help} (JIT; default %(default)s)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(c) for c in text.split(",")],
        default=list(connections),
        help=f"comma-separated (default {','.join(map(str, connections))})",
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="default %(default)s")


def measure_in_temp(name, prefix, measure, errors=(), tools=("wrk",)):
    """A wrk bench's main body: its tools checked, `measure(folder)` run in a
    temporary folder removed after (whatever happens), and a known failure (a
    missing tool, a LoadError or one of `errors`) said in one line on stderr.
    Returns measure's result, or None when it failed."""
    try:
        ensure_tools(*tools)
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            return measure(Path(folder))
    except (LoadError, *errors) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return None


def run_wrk(url, connections, seconds, threads, log_file, timeout_s=5, headers=()):
    """headers: extra request headers, "Name: value" each (e.g. a bearer token)."""
    threads = max(1, min(threads, connections))
    command = [
        wrk_binary() or "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        str(LUA_SCRIPT),
    ]
    for header in headers:
        command += ["-H", header]
    command.append(url)
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL)
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    summary = next(
        (line[len(SUMMARY_MARKER) :] for line in result.stdout.splitlines() if line.startswith(SUMMARY_MARKER)), None
    )
    if result.returncode != 0 or summary is None:
        raise LoadError(f"wrk failed (exit {result.returncode}): {result.stderr.strip() or result.stdout[-500:]}")
    figures = json.loads(summary)
    errors = figures["errors"]
    latency = figures["latency_us"]
    return LoadResult(
        connections=connections,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        errors=sum(errors.values()),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        error_detail=errors,
    )
