#!/usr/bin/env python3
"""A bounded, answer-checking HTTP load generator for the fizbuz predictions API.

Keeps `--concurrency` keep-alive connections busy with POSTs of {"input.1": n}
(n cycling through 0..1022 from a different start per connection), for a fixed
number of requests or seconds, and checks every reply against the true
FizzBuzz of n + 1. Prints a summary (req/s, latency percentiles, status codes,
wrong answers, transport errors). Standard library only, so it runs anywhere
the project's venv does; soak and fault tests use it as a library.

Example: tools/loadgen.py --port 8080 --concurrency 64 --duration 30
"""

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fizbuz_codec import MAX_INPUT, MIN_INPUT, true_label  # noqa: E402

PATH = "/predictions/fizbuz_package"


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    wrong: list = field(default_factory=list)  # (n, status, body) of wrong 200s
    failures: list = field(default_factory=list)  # (n, status, body) of non-200s
    transport_errors: Counter = field(default_factory=Counter)
    latencies: list = field(default_factory=list)  # seconds, answered requests only
    elapsed: float = 0.0

    @property
    def answered(self):
        return sum(self.statuses.values())

    def percentile(self, fraction):
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def summary(self):
        return {
            "requests": self.sent, "answered": self.answered,
            "req_per_s": round(self.answered / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(self.percentile(0.50) * 1000, 2),
            "p90_ms": round(self.percentile(0.90) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "max_ms": round(max(self.latencies, default=float("nan")) * 1000, 2),
            "statuses": dict(self.statuses), "wrong_answers": len(self.wrong),
            "transport_errors": dict(self.transport_errors),
        }


def request_bytes(port, number):
    body = json.dumps({"input.1": number}).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader):
    """(status, body bytes, keep_alive) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, keep_alive = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            keep_alive = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep_alive


async def connection_loop(port, start, deadline, budget, result, timeout):
    number = start
    reader = writer = None
    try:
        while time.monotonic() < deadline and budget():
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port), timeout)
                except (OSError, asyncio.TimeoutError) as error:
                    result.transport_errors[f"connect: {type(error).__name__}"] += 1
                    await asyncio.sleep(0.05)  # back off before reconnecting, not a readiness wait
                    continue
            result.sent += 1
            began = time.monotonic()
            try:
                writer.write(request_bytes(port, number))
                status, body, keep_alive = await asyncio.wait_for(read_response(reader), timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError) as error:
                result.transport_errors[type(error).__name__] += 1
                writer.close()
                reader = writer = None
                continue
            if not keep_alive:
                writer.close()
                reader = writer = None
            result.latencies.append(time.monotonic() - began)
            result.statuses[status] += 1
            if status == 200:
                try:
                    answer = json.loads(body)
                except ValueError:
                    answer = None
                if answer != {"next_number": true_label(number + 1)}:
                    result.wrong.append((number, status, body[:200]))
            else:
                result.failures.append((number, status, body[:200]))
            number = number + 1 if number < MAX_INPUT else MIN_INPUT
    finally:
        if writer is not None:
            writer.close()


async def run_load(port, concurrency, duration=None, total=None, timeout=30.0, result=None):
    """Run the load; stops after `duration` seconds or `total` requests."""
    if duration is None and total is None:
        raise ValueError("give a duration or a total")
    result = result or LoadResult()
    deadline = time.monotonic() + (duration if duration is not None else 24 * 3600)
    budget = (lambda: True) if total is None else (lambda: result.sent < total)
    spread = (MAX_INPUT - MIN_INPUT + 1) // max(concurrency, 1)
    began = time.monotonic()
    await asyncio.gather(*(connection_loop(port, MIN_INPUT + i * spread, deadline, budget, result, timeout)
                           for i in range(concurrency)))
    result.elapsed = time.monotonic() - began
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080, help="inference port (default: %(default)s)")
    parser.add_argument("--concurrency", "-c", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--duration", "-d", type=float, help="seconds to run")
    parser.add_argument("--requests", "-n", type=int, help="requests to send (instead of --duration)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds one request may take (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.duration is None and args.requests is None:
        args.duration = 10.0
    return args


def main(argv=None):
    args = parse_args(argv)
    result = asyncio.run(run_load(args.port, args.concurrency, args.duration, args.requests, args.timeout))
    print(json.dumps(result.summary(), indent=2))
    for number, status, body in (result.wrong + result.failures)[:10]:
        print(f"  n={number} status={status} body={body!r}", file=sys.stderr)
    healthy = not result.wrong and not result.failures and not result.transport_errors
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
