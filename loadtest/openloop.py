"""An open-loop, answer-checking load generator: requests leave on a fixed
arrival schedule whatever is still outstanding, as real traffic does.

Closed-loop tools (wrk, locust, loadtest.loadgen) wait for an answer before
sending again, so a slow server slows its own load down and past capacity they
measure nothing. Here the schedule is fixed in advance (constant spacing, or a
Poisson process: exponential gaps, seeded) at --rate requests/s for --duration
seconds; each request is sent at its time on a keep-alive connection (aiohttp's
pool, as many connections as requests outstanding, bounded only by --max-outstanding:
a send that would pass it is not made and is counted as `cap_hit`).

Latency is measured from the *scheduled* send time, not from when the request
left (no coordinated omission: a generator that fell behind does not hide the
wait). Every answer is checked with the project's contract and classified:
right, wrong, a 4xx or 5xx by code (429/503 also by whether they carried
Retry-After), timeout, connection error. When the generator itself could not
keep its schedule (its sends left late: the machine, not the server, was the
limit) the report says so (`behind_schedule`) instead of passing a wrong number off.

Paths: the card's (`POST /predictions/fizbuz_package`, {"input.1": n}) and the
Open Inference Protocol v2 REST (`POST /v2/models/fizbuz_package/infer`, one
INT64 number, the label output asked for).

Examples:
  python -m loadtest.openloop --url https://127.0.0.1:8443 --cafile cert.pem --token T --rate 400 -d 10
  python -m loadtest.openloop --url http://127.0.0.1:8080 --rate 200 --arrival poisson --protocol card
"""

import argparse
import asyncio
import json
import random
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

import fizbuz_v2
from fizbuz.answers import labels_are_right, reply_is_right, v2_labels
from fizbuz.contract import MAX_INPUT, MIN_INPUT, PREDICT_PATH, request_body
from loadtest.loadgen import AUTO_HEADERS

PROTOCOLS = ("card", "v2")
ARRIVALS = ("constant", "poisson")
V2_INFER_PATH = f"/v2/models/{fizbuz_v2.MODEL_NAME}/infer"
# Statuses that say "not now, come back": they must carry Retry-After.
REJECTIONS = (429, 503)
# The generator is "behind schedule" when more than this share of its sends left
# later than LATE_SEND after their scheduled time.
WARM_PATH = "/openloop-warm-up"  # a path no fizbuz server serves: a 404 from its front
LATE_SEND = 0.010
LATE_SHARE = 0.01
TIMEOUT_HEADER = fizbuz_v2.TIMEOUT_HEADER  # the per-request deadline the front door and handler honour


def schedule(rate, duration, arrival, seed=0):
    """Send offsets in seconds from the start: every 1/rate, or a seeded Poisson process."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {ARRIVALS}")
    if arrival == "constant":
        return [i / rate for i in range(int(rate * duration))]
    rng, offsets, now = random.Random(seed), [], 0.0
    while True:
        now += rng.expovariate(rate)
        if now >= duration:
            return offsets
        offsets.append(now)


def v2_body(number):
    return json.dumps(
        {
            "inputs": [{"name": fizbuz_v2.INPUT_NAME, "datatype": "INT64", "shape": [1, 1], "data": [number]}],
            "outputs": [{"name": fizbuz_v2.LABEL_OUTPUT}],
        }
    ).encode()


def v2_right(number, status, body):
    """True when a v2 REST reply holds exactly the label of number + 1."""
    return status == 200 and labels_are_right([number], v2_labels(body, fizbuz_v2.LABEL_OUTPUT))


REQUESTS = {  # protocol: (path, body maker, answer check)
    "card": (PREDICT_PATH, request_body, reply_is_right),
    "v2": (V2_INFER_PATH, v2_body, v2_right),
}


@dataclass
class Outcomes:
    """What happened to every scheduled request."""

    scheduled: int = 0
    sent: int = 0
    cap_hit: int = 0  # not sent: --max-outstanding requests were already out
    classes: Counter = field(default_factory=Counter)  # right, wrong, 4xx:429, 5xx:503, timeout, connection_error
    without_retry_after: Counter = field(default_factory=Counter)  # 429/503 that lacked the header
    latencies: dict = field(default_factory=dict)  # class -> [seconds from the scheduled time]
    send_lags: list = field(default_factory=list)  # seconds each send left after its time
    samples: dict = field(default_factory=dict)  # class -> one body, to show
    elapsed: float = 0.0
    max_outstanding_seen: int = 0

    def add(self, kind, latency, body=b""):
        self.classes[kind] += 1
        self.latencies.setdefault(kind, []).append(latency)
        if kind != "right" and kind not in self.samples:
            self.samples[kind] = body[:200].decode("utf-8", "replace") if isinstance(body, bytes) else str(body)

    @property
    def rejected(self):
        return sum(
            n
            for kind, n in self.classes.items()
            if kind in {f"4xx:{c}" for c in REJECTIONS} | {f"5xx:{c}" for c in REJECTIONS}
        )

    def rejection_latencies(self):
        return [t for kind, values in self.latencies.items() if kind in ("4xx:429", "5xx:503") for t in values]

    @property
    def behind_schedule(self):
        late = sum(lag > LATE_SEND for lag in self.send_lags)
        return bool(self.send_lags) and late > LATE_SHARE * len(self.send_lags)

    def summary(self):
        right = self.latencies.get("right", [])
        rejected = self.rejection_latencies()
        lags = self.send_lags
        return {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "cap_hit": self.cap_hit,
            "classes": dict(sorted(self.classes.items())),
            "rejections_without_retry_after": dict(self.without_retry_after),
            "goodput_per_s": round(len(right) / self.elapsed, 1) if self.elapsed else 0.0,
            "admitted_p50_ms": _ms(percentile(right, 0.50)),
            "admitted_p99_ms": _ms(percentile(right, 0.99)),
            "admitted_max_ms": _ms(max(right, default=float("nan"))),
            "rejected_p50_ms": _ms(percentile(rejected, 0.50)),
            "rejected_p99_ms": _ms(percentile(rejected, 0.99)),
            "send_lag_p99_ms": _ms(percentile(lags, 0.99)),
            "late_sends": sum(lag > LATE_SEND for lag in lags),
            "behind_schedule": self.behind_schedule,
            "max_outstanding": self.max_outstanding_seen,
            "seconds": round(self.elapsed, 2),
            "samples": self.samples,
        }


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ms(seconds):
    return round(seconds * 1000, 2) if seconds == seconds else None  # NaN -> null


def classify(status, right):
    if status == 200:
        return "right" if right else "wrong"
    return f"{status // 100}xx:{status}"


@dataclass
class Target:
    base_url: str  # "https://127.0.0.1:8443"
    protocol: str = "card"
    token: str = None
    cafile: str = None
    timeout: float = 10.0  # seconds the generator waits for one answer
    deadline_ms: int = 0  # sent as the Timeout-Ms header when > 0

    def headers(self):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.deadline_ms:
            headers[TIMEOUT_HEADER] = str(self.deadline_ms)
        return headers


async def _one(session, target, number, due, outcomes):
    path, make_body, is_right = REQUESTS[target.protocol]
    try:
        async with session.post(target.base_url + path, data=make_body(number), headers=target.headers()) as response:
            body = await response.read()
            status, retry_after = response.status, response.headers.get("Retry-After")
    except asyncio.TimeoutError:
        outcomes.add("timeout", time.monotonic() - due)
        return
    except aiohttp.ClientError as error:
        outcomes.add("connection_error", time.monotonic() - due, f"{type(error).__name__}: {error}")
        return
    kind = classify(status, is_right(number, status, body))
    if status in REJECTIONS and not retry_after:
        outcomes.without_retry_after[kind] += 1
    outcomes.add(kind, time.monotonic() - due, body)


async def _warm(session, target, connections):
    """Open `connections` keep-alive connections before the clock starts (a GET
    of a path nothing serves: answered by the server's front, costs no model
    work), so TLS handshakes do not make the first sends late."""

    async def touch():
        try:
            async with session.get(target.base_url + WARM_PATH) as response:
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the run itself will count what goes wrong

    await asyncio.gather(*(touch() for _ in range(connections)))


async def run(target, rate, duration, arrival="constant", seed=0, max_outstanding=10000, warm=32):
    """Send on schedule; returns Outcomes once every sent request has ended."""
    if target.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}")
    offsets = schedule(rate, duration, arrival, seed)
    outcomes = Outcomes(scheduled=len(offsets))
    tls = ssl.create_default_context(cafile=str(target.cafile)) if target.cafile else None
    # The pool never holds a send back below the cap: one connection per outstanding request.
    connector = aiohttp.TCPConnector(limit=max_outstanding, ssl=tls if tls else True)
    outstanding = set()
    numbers = range(MIN_INPUT, MAX_INPUT + 1)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=target.timeout),
        skip_auto_headers=AUTO_HEADERS,
        auto_decompress=False,
    ) as session:
        await _warm(session, target, min(warm, max_outstanding))
        start = time.monotonic()
        for index, offset in enumerate(offsets):
            due = start + offset
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if len(outstanding) >= max_outstanding:
                outcomes.cap_hit += 1
                continue
            outcomes.send_lags.append(max(0.0, time.monotonic() - due))
            outcomes.sent += 1
            task = asyncio.ensure_future(_one(session, target, numbers[index % len(numbers)], due, outcomes))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
            outcomes.max_outstanding_seen = max(outcomes.max_outstanding_seen, len(outstanding))
        if outstanding:
            await asyncio.wait(set(outstanding))
        outcomes.elapsed = time.monotonic() - start
    return outcomes


def run_sync(target, rate, duration, **kwargs):
    return asyncio.run(run(target, rate, duration, **kwargs))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.openloop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="the server's base URL, e.g. https://127.0.0.1:8443")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="card", help="(default: %(default)s)")
    parser.add_argument("--rate", type=float, required=True, help="requests per second offered")
    parser.add_argument("--duration", "-d", type=float, default=10.0, help="seconds (default: %(default)s)")
    parser.add_argument("--arrival", choices=ARRIVALS, default="constant", help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the Poisson schedule's seed (default: %(default)s)")
    parser.add_argument("--token", help="bearer token (the front door's)")
    parser.add_argument("--cafile", help="CA certificate for an HTTPS server")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds the generator waits for one answer (default: %(default)s)"
    )
    parser.add_argument(
        "--deadline-ms",
        type=int,
        default=0,
        help=f"send a {TIMEOUT_HEADER} header (the server skips work past it); 0: none",
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=32,
        help="keep-alive connections opened before the clock starts (default: %(default)s)",
    )
    parser.add_argument(
        "--max-outstanding",
        type=int,
        default=10000,
        help="requests out at once before a send is skipped and counted (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.max_outstanding < 1 or args.deadline_ms < 0 or args.warm < 0:
        parser.error("--rate, --duration and --max-outstanding must be positive, --deadline-ms and --warm not negative")
    return args


def main(argv=None):
    args = parse_args(argv)
    target = Target(args.url.rstrip("/"), args.protocol, args.token, args.cafile, args.timeout, args.deadline_ms)
    outcomes = run_sync(
        target,
        args.rate,
        args.duration,
        arrival=args.arrival,
        seed=args.seed,
        max_outstanding=args.max_outstanding,
        warm=args.warm,
    )
    print(json.dumps(outcomes.summary(), indent=2))
    if outcomes.behind_schedule:
        print(
            "openloop: the generator could not keep its schedule (late sends): the offered rate was "
            "not really offered; lower --rate or run it on another machine",
            file=sys.stderr,
        )
        return 2
    bad = {k for k in outcomes.classes if k in ("wrong", "timeout", "connection_error")}
    return 1 if bad or outcomes.without_retry_after else 0


if __name__ == "__main__":
    sys.exit(main())
