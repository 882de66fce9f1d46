#!/usr/bin/env python3
"""Past capacity, with and without admission control: open-loop load (loadtest.openloop)
from 0.25x to 4x a host's capacity through the front door, one run.

Capacity is made small on purpose so this box can offer 4x it (a Python
generator shares the 2 cores with nginx and MMS): one host (namespace), one
MMS worker, batch 1, a copy of the archive that sleeps --sleep-ms per batch
(fizbuz.archive.variant). The front door is the shipped template and
renderer; only its admission cap is switched between rounds (a graceful
reload): "on" admits --admission requests per host entry, "off" is no cap
(MMS's own job queue, 1000, and the 3 s read timeout decide). Points are
interleaved (on, off, on, off, ...), each after the host has drained its queue
(a lone request answered within 5 x the sleep again). Every answer is checked.

Writes bench/results/overload/overload.{json,md} and overload.png (matplotlib).

Examples:
  python -m bench.overload                      # the shipped curve (about 4 minutes)
  python -m bench.overload --seconds 4 --factors 0.5 1 4
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from fizbuz import archive
from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, SMOKE_INPUT
from fizbuz.http_client import exchange, predict
from fizbuz.lifecycle import LifecycleError, free_ports, wait_until
from loadtest import openloop
from serving.front import tokens
from serving.front.fleet import Fleet, Options

HERE = Path(__file__).resolve().parent
FACTORS = (0.25, 0.5, 1, 1.5, 2, 3, 4)
SETTINGS = {"on": None, "off": 0}  # admission per host entry: None = --admission


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench.overload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per point (default: %(default)s)")
    parser.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=list(FACTORS),
        help="offered load as multiples of capacity (default: %(default)s)",
    )
    parser.add_argument(
        "--sleep-ms",
        type=int,
        default=40,
        help="the slow archive's ms per batch (default: %(default)s; 4x of it stays within "
        "what the generator keeps on schedule here)",
    )
    parser.add_argument(
        "--admission", type=int, default=4, help="'on': requests in flight per host entry (default: %(default)s)"
    )
    parser.add_argument("--arrival", choices=openloop.ARRIVALS, default="poisson")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", default=str(HERE / "results" / "overload"))
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.sleep_ms < 1 or args.admission < 1 or min(args.factors) <= 0:
        parser.error("--seconds, --sleep-ms, --admission and every factor must be positive")
    return args


def upstream_tries(access_log, start, end):
    """(requests, tries, the door's own times of its refusals in s) in the access
    log's lines start..end: host addresses only (a group's name stands where every
    host was at its cap); a refusal's time is nginx's $request_time (rt=), which
    no stall of the generator or of the client's side of the box enters."""
    lines = [line for line in access_log.read_text().splitlines()[start:end] if '"POST ' in line]
    tries, refusals = 0, []
    for line in lines:
        field = line.split(" upstream=")[1].split(" ")[0]
        tries += sum(part.strip()[:1].isdigit() for part in field.replace(" : ", ",").split(","))
        if '" 503 ' in line or '" 429 ' in line:
            refusals.append(float(line.split(" rt=")[1].split(" ")[0]))
    return len(lines), tries, refusals


def mark(fleet, base, cafile):
    """Lines in the access log up to a marker request, once written (one nginx
    worker: one buffer, so every earlier line is written too)."""
    marker = f"/overload-mark-{time.monotonic_ns()}"
    exchange("GET", base + marker, 10, cafile=cafile)
    return wait_until(
        lambda: next(
            (index + 1 for index, line in enumerate(fleet.door.access_log.read_text().splitlines()) if marker in line),
            None,
        ),
        15,
        "the marker line",
    )


def drained(url, cafile, token, sleep_ms):
    """The host's queue is empty again: a lone request is answered right, fast."""

    def quick():
        began = time.monotonic()
        status, _ = predict(url, SMOKE_INPUT, timeout=10, cafile=cafile, headers={"Authorization": f"Bearer {token}"})
        return status == 200 and time.monotonic() - began < 5 * sleep_ms / 1000

    wait_until(quick, 120, "the host to drain its queue", interval=0.2)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the fleet on the way out
    # MMS's warm-up before ready runs every input 4 times: on the slow archive
    # that is minutes (4092 x --sleep-ms); the saturation run below warms it instead.
    os.environ.setdefault("FIZBUZ_MMS_WARMUP", "0")
    directory = Path(tempfile.mkdtemp(prefix="fbz-overload-"))
    fleet = Fleet(directory)
    rows = []
    try:
        slow = archive.variant(args.mar, directory / MAR_FILE_NAME, batch_sleep_ms=args.sleep_ms)
        front_port, metrics_port = free_ports(2)
        state = fleet.start(
            Options(
                hosts=1,
                workers=1,
                batch_size=1,
                routing="batched",
                single_workers=0,
                front_port=front_port,
                metrics_port=metrics_port,
                mar=str(slow),
                admission=args.admission,
                nginx_workers="1",
            )
        )
        base = f"https://{state['front']['listen']}"
        token = tokens.read(fleet.token_file)["default"]
        cafile = state["front"]["certificate"]
        target = openloop.Target(base, "card", token, cafile, timeout=30.0)
        url = base + openloop.PREDICT_PATH
        # Capacity: what the host answers right when offered far more (admission on).
        saturated = openloop.run_sync(target, 4000 / args.sleep_ms, args.seconds, arrival=args.arrival)
        capacity = saturated.classes["right"] / args.seconds
        print(json.dumps({"capacity_per_s": round(capacity, 1), "saturation_run": saturated.summary()}), flush=True)
        for factor in args.factors:
            for name, admission in SETTINGS.items():
                fleet.update_front(admission=args.admission if admission is None else admission)
                drained(url, cafile, token, args.sleep_ms)
                log_start = mark(fleet, base, cafile)
                outcomes = openloop.run_sync(target, capacity * factor, args.seconds, arrival=args.arrival)
                requests, tries, refusals = upstream_tries(fleet.door.access_log, log_start, mark(fleet, base, cafile))
                row = {
                    "admission": name,
                    "factor": factor,
                    "offered_per_s": round(capacity * factor, 1),
                    "load_avg_1m": os.getloadavg()[0],
                    "tries_per_request": round(tries / max(1, requests), 3),
                    "door_refusal_p99_ms": round(openloop.percentile(refusals, 0.99) * 1000, 2) if refusals else None,
                    **outcomes.summary(),
                }
                row.pop("samples")
                print(json.dumps(row), flush=True)
                rows.append(row)
    except LifecycleError as error:
        raise SystemExit(f"bench.overload: {error}")
    finally:
        fleet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    write(rows, capacity, Path(args.output), args)
    return 0


def _refused(row):
    return sum(n for kind, n in row["classes"].items() if kind in ("5xx:503", "4xx:429"))


def _failed(row):
    return sum(n for kind, n in row["classes"].items() if kind not in ("right", "5xx:503", "4xx:429"))


def write(rows, capacity, output, args):
    output.mkdir(parents=True, exist_ok=True)
    (output / "overload.json").write_text(json.dumps({"capacity_per_s": capacity, "rows": rows}, indent=2))
    loads = [r["load_avg_1m"] for r in rows]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# Past capacity, with and without admission control ({when})",
        "",
        f"Command: `python -m bench.overload {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"One host, one MMS worker, batch 1, an archive that sleeps {args.sleep_ms} ms per batch: capacity "
        f"{capacity:.1f} requests/s (answered right when offered 4000/sleep-ms requests/s). Open-loop "
        f"{args.arrival} arrivals through the front door (HTTPS, token), {args.seconds:g} s per point, "
        "interleaved on/off; 'on' admits "
        f"{args.admission} requests per host entry (x2: primary and backup), 'off' has no cap. Same 2 cores "
        f"for generator, nginx and MMS, shared with other jobs (1-minute load average "
        f"{min(loads):.1f}..{max(loads):.1f}). Latency counts from each request's scheduled send time.",
        "",
        "| offered | admission | goodput/s | refused (503+RA) | failed (timeout, 5xx, conn) | wrong | "
        "admitted p50 ms | admitted p99 ms | refused p99 ms | door's refusal p99 ms (nginx rt) | "
        "tries/request | generator late (send lag p99 ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['factor']:g}x ({row['offered_per_s']:.0f}/s) | {row['admission']} | "
            f"{row['goodput_per_s']:.1f} | {_refused(row)} | {_failed(row)} | "
            f"{row['classes'].get('wrong', 0)} | "
            f"{row['admitted_p50_ms']} | {row['admitted_p99_ms']} | {row['rejected_p99_ms']} | "
            f"{row.get('door_refusal_p99_ms')} | {row['tries_per_request']} | "
            f"{'yes' if row['behind_schedule'] else 'no'} ({row['send_lag_p99_ms']}) |"
        )
    lines += criteria(rows)
    (output / "overload.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, output / "overload.png")


def criteria(rows):
    """The issue's goals, read from the 'on' rows at 1x and 4x: lines for the results file."""
    on = {row["factor"]: row for row in rows if row["admission"] == "on"}
    if 1 not in on or 4 not in on:
        return ["", "(the criteria need the 1x and 4x points)"]
    one, four = on[1], on[4]

    def verdict(ok):
        return "met" if ok else "**not met**"

    goodput = four["goodput_per_s"] / one["goodput_per_s"] if one["goodput_per_s"] else 0.0
    refused = [r["rejected_p99_ms"] for r in on.values() if r["rejected_p99_ms"] is not None]
    door = [r.get("door_refusal_p99_ms") for r in on.values() if r.get("door_refusal_p99_ms") is not None]
    ratio = (four["admitted_p99_ms"] or 0) / (one["admitted_p99_ms"] or float("inf"))
    late = [f"{r['factor']:g}x {r['admission']}" for r in rows if r["behind_schedule"]]
    return [
        "",
        "Issue 23's criteria (admission on):",
        "",
        f"- goodput at 4x / at 1x: {goodput:.0%} (at least 90%): {verdict(goodput >= 0.9)}",
        f"- refusals' p99, worst point, at the client: {max(refused, default=0)} ms; the door's own "
        f"(nginx rt): {max(door, default=0)} ms (under 10 ms): {verdict(max(refused, default=0) < 10)} at the "
        f"client, {verdict(max(door, default=0) < 10)} at the door",
        f"- admitted p99 at 4x / at 1x: {ratio:.2f} (at most 3): {verdict(ratio <= 3)}",
        f"- upstream tries per request at 4x: {four['tries_per_request']} (at most 1.1): "
        f"{verdict(four['tries_per_request'] <= 1.1)}",
        f"- generator late (over 1% of sends more than 10 ms late): {', '.join(late) or 'never'}",
    ]


def plot(rows, path):
    import matplotlib  # noqa: PLC0415  (only for the figure)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("on", "-o"), ("off", "--s")):
        mine = [r for r in rows if r["admission"] == name]
        factors = [r["factor"] for r in mine]
        left.plot(factors, [r["goodput_per_s"] for r in mine], style, label=f"goodput, admission {name}")
        left.plot(
            factors, [_refused(r) / r["seconds"] for r in mine], style, alpha=0.5, label=f"refused/s, admission {name}"
        )
        right.plot(factors, [r["admitted_p50_ms"] or 0 for r in mine], style, label=f"p50, admission {name}")
        right.plot(factors, [r["admitted_p99_ms"] or 0 for r in mine], style, alpha=0.5, label=f"p99, admission {name}")
    left.set(xlabel="offered load (x capacity)", ylabel="requests/s", title="Goodput and refusals")
    right.set(
        xlabel="offered load (x capacity)",
        ylabel="ms (admitted, from scheduled send)",
        title="Latency of admitted requests",
        yscale="log",
    )
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
