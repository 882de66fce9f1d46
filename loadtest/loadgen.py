"""A bounded, answer-checking HTTP load generator for the fizbuz predictions API.

Keeps --concurrency keep-alive connections busy with POSTs of {"input.1": n}
(n cycling through 0..1022 from a different start per connection), for a fixed
number of requests or seconds, and checks every reply against the true
FizzBuzz of n + 1. Prints a JSON summary (req/s, latency percentiles, status
codes, wrong answers, transport errors); exits 1 on any of the last three.
HTTP is aiohttp's; soak and fault tools use run_load() as a library.

Examples:
  python -m loadtest.loadgen --port 8080 -c 64 -d 30
  python -m loadtest.loadgen --url https://host:8443/predictions/fizbuz_package --cafile cert.pem -n 1000
"""

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from fizbuz.answers import reply_is_right
from fizbuz.contract import MAX_INPUT, MIN_INPUT, request_body
from fizbuz.http_client import predict_url

HEADERS = {"Content-Type": "application/json"}
AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")
CONNECT_BACKOFF = 0.05  # seconds between reconnect attempts, so a down server is not hammered


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
            "requests": self.sent,
            "answered": self.answered,
            "req_per_s": round(self.answered / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(self.percentile(0.50) * 1000, 2),
            "p90_ms": round(self.percentile(0.90) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "max_ms": round(max(self.latencies, default=float("nan")) * 1000, 2),
            "statuses": dict(self.statuses),
            "wrong_answers": len(self.wrong),
            "transport_errors": dict(self.transport_errors),
        }

    @property
    def healthy(self):
        return not self.wrong and not self.failures and not self.transport_errors


async def one_request(session, url, number, result):
    """Send one prediction request and record what came back."""
    result.sent += 1
    began = time.monotonic()
    try:
        async with session.post(url, data=request_body(number), headers=HEADERS) as response:
            body = await response.read()
    except aiohttp.ClientConnectorError as error:  # nothing accepted the connection
        result.transport_errors[f"connect: {type(error.os_error).__name__}"] += 1
        await asyncio.sleep(CONNECT_BACKOFF)
        return
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        result.transport_errors[type(error).__name__] += 1
        return
    result.latencies.append(time.monotonic() - began)
    result.statuses[response.status] += 1
    if response.status != 200:
        result.failures.append((number, response.status, body[:200]))
    elif not reply_is_right(number, response.status, body):
        result.wrong.append((number, response.status, body[:200]))


async def connection_loop(session, url, start, deadline, budget, result):
    """One client's requests back to back; with one connection per client in
    the pool, each loop keeps one keep-alive connection busy."""
    number = start
    while time.monotonic() < deadline and budget():
        await one_request(session, url, number, result)
        number = number + 1 if number < MAX_INPUT else MIN_INPUT


async def run_load(
    port=8080, concurrency=16, duration=None, total=None, timeout=30.0, result=None, url=None, cafile=None, stop=None
):
    """Run the load against `url` (default: the predictions URL on 127.0.0.1:`port`);
    stops after `duration` seconds, once `result` holds `total` requests, or once the
    asyncio.Event `stop` is set (each client finishes the request it is in).
    Returns the LoadResult (`result`, when given, is filled as the load runs)."""
    if duration is None and total is None and stop is None:
        raise ValueError("give a duration or a total (or a stop event)")
    url = url or predict_url(port)
    result = result or LoadResult()
    deadline = time.monotonic() + (duration if duration is not None else 24 * 3600)
    budget = (lambda: True) if total is None else (lambda: result.sent < total)
    if stop is not None:
        budget = lambda within=budget: within() and not stop.is_set()
    spread = (MAX_INPUT - MIN_INPUT + 1) // max(concurrency, 1)
    tls = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    # limit=concurrency: the pool holds exactly one keep-alive connection per client loop.
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=tls if tls else True)
    began = time.monotonic()
    # Lean requests (no User-Agent/Accept/Accept-Encoding; nothing to decompress)
    # keep the client's CPU share small on a machine it shares with the server.
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        skip_auto_headers=AUTO_HEADERS,
        auto_decompress=False,
    ) as session:
        await asyncio.gather(
            *(
                connection_loop(session, url, MIN_INPUT + i * spread, deadline, budget, result)
                for i in range(concurrency)
            )
        )
    result.elapsed = time.monotonic() - began
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.loadgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080, help="inference port on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--url", help="the full predictions URL instead (another host, HTTPS, a front door)")
    parser.add_argument("--cafile", help="CA certificate that signs an HTTPS server's (e.g. a self-signed one)")
    parser.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=16,
        help="keep-alive connections, each with one request in flight (default: %(default)s)",
    )
    parser.add_argument("--duration", "-d", type=float, help="seconds to run (default: 10)")
    parser.add_argument("--requests", "-n", type=int, help="requests to send (instead of --duration)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds one request may take (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.duration is None and args.requests is None:
        args.duration = 10.0
    return args


def main(argv=None):
    args = parse_args(argv)
    result = asyncio.run(
        run_load(
            args.port, args.concurrency, args.duration, args.requests, args.timeout, url=args.url, cafile=args.cafile
        )
    )
    print(json.dumps(result.summary(), indent=2))
    for number, status, body in (result.wrong + result.failures)[:10]:
        print(f"  n={number} status={status} body={body!r}", file=sys.stderr)
    return 0 if result.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
