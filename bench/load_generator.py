"""Run wrk with post_inputs.lua against one URL and return its figures."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "post_inputs.lua"
SUMMARY_MARKER = "WRK_SUMMARY "


class LoadError(Exception):
    pass


@dataclass
class LoadResult:
    connections: int
    requests: int
    seconds: float
    errors: int          # socket errors + non-2xx/3xx answers
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


def run_wrk(url, connections, seconds, threads, log_file, timeout_s=5, headers=()):
    """headers: extra request headers, "Name: value" each (e.g. a bearer token)."""
    threads = max(1, min(threads, connections))
    command = [wrk_binary() or "wrk", "-t", str(threads), "-c", str(connections),
               "-d", f"{seconds}s", "--timeout", f"{timeout_s}s", "-s", str(LUA_SCRIPT)]
    for header in headers:
        command += ["-H", header]
    command.append(url)
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                            stdin=subprocess.DEVNULL)
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    summary = next((line[len(SUMMARY_MARKER):] for line in result.stdout.splitlines()
                    if line.startswith(SUMMARY_MARKER)), None)
    if result.returncode != 0 or summary is None:
        raise LoadError(f"wrk failed (exit {result.returncode}): {result.stderr.strip() or result.stdout[-500:]}")
    figures = json.loads(summary)
    errors = figures["errors"]
    latency = figures["latency_us"]
    return LoadResult(
        connections=connections, requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6, errors=sum(errors.values()),
        p50_ms=latency["p50"] / 1000, p90_ms=latency["p90"] / 1000, p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000, error_detail=errors)
