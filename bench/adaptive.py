#!/usr/bin/env python3
"""Adaptive batching through the front door (issue 13): batched only, batch 1
only and adaptive side by side, on one fleet, in one run.

One host (a network namespace, free ports, a temp folder) registers the model
twice: batched (batch 16, delay 1 ms: fizbuz_package) and batch 1, no delay
(fizbuz_package_single). The three configurations are the front door's three
routings, switched by a graceful reload between runs: `batched` (adaptive off,
what --batched-only ships), `single` (every request to batch 1) and `adaptive`
(batch 1 while at most THRESHOLD client connections are open, batched above).
Baselines at c=1: MMS batch 1 with 2 workers straight (no front door) and
Flask + gunicorn sync (2 workers).

1. Split: for each --splits value (workers of the batch-1 registration, scaled
   through MMS's management API), batched and single at the --derive-levels,
   in rounds (every split in each round). Per split, the threshold is the largest level up to which
   batch 1 beat batching at every level; the split chosen is the one whose
   predicted adaptive (batch 1 up to its threshold, batched above) has the most
   req/s summed over those levels.
2. Comparison: --rounds rounds; in each, at every level of --levels, the three
   routings one after another (a different order each round, every order over
   6 rounds), plus the baselines at c=1; each timed run follows --warmup
   untimed seconds. Medians and ranges over rounds; the issue's figures checked.

Every target's answers to all 1023 inputs are checked before timing (each
routing through the front door, with several clients at once so batches form);
wrk counts any non-2xx answer as an error. Writes
bench/results/adaptive/{adaptive.md, adaptive.json, requests_per_second.png}.
"""

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import machine, report
from bench.load_generator import LoadError, ensure_tools, run_wrk, wrk_binary
from fizbuz import answers
from fizbuz.contract import (
    MAR_FILE_NAME,
    MAX_INPUT,
    MIN_INPUT,
    MODEL_NAME,
    MODEL_STORE,
    PREDICT_PATH,
    SINGLE_MODEL_NAME,
)
from fizbuz.http_client import predict
from fizbuz.lifecycle import free_port
from serving.flask.private import PrivateGunicorn
from serving.front import tokens
from serving.front.fleet import Fleet, Options
from serving.front.network import run_in
from serving.front.nginx import find_nginx
from serving.metrics.scrape import scrape
from serving.mms import management
from serving.mms.private import PrivateMms

HERE = Path(__file__).resolve().parent
ROUTINGS = ("batched", "single", "adaptive")
# The A/A control at the top level: batched-only again, after its own reload.
# Two runs of one configuration differ by this much; at the top level adaptive
# routes exactly like batched-only (its batch-1 share shows it), so its p99 is
# judged against this spread.
CONTROL = "batched-again"
NAMES = {
    "batched": "front-batched",
    "single": "front-single",
    "adaptive": "front-adaptive",
    CONTROL: "front-batched (again)",
    "mms": "mms-b1-w2 straight",
    "flask": "flask-sync",
}


def say(message):
    print(f"==> {message}", flush=True)


def int_list(text):
    return [int(part) for part in text.split(",") if part.strip()]


class Targets:
    """The fleet (its front door switched between routings) and the baselines."""

    def __init__(self, fleet, state, mms, flask, wrk_log):
        self.fleet, self.mms, self.flask, self.wrk_log = fleet, mms, flask, wrk_log
        self.host = fleet.hosts(state)[0]
        self.front_url = f"https://{state['front']['listen']}{PREDICT_PATH}"
        self.cafile = state["front"]["certificate"]
        self.token = tokens.read(fleet.token_file)["default"]

    def route(self, routing, threshold=None):
        changes = {"routing": routing}
        if threshold is not None:
            changes["adaptive_threshold"] = threshold
        state = self.fleet.require()["front"]
        if any(state.get(key) != value for key, value in changes.items()):
            self.fleet.update_front(**changes)  # graceful reload; returns once old workers are gone

    def answered(self):
        """(batched, batch 1) requests the host's handler has answered so far,
        from its metrics exporter."""
        samples = run_in(self.host.namespace, scrape, f"http://127.0.0.1:{self.host.metrics_port}/metrics")
        return tuple(samples.total("fizbuz_requests_total", model=model) for model in (MODEL_NAME, SINGLE_MODEL_NAME))

    def scale_single(self, workers):
        run_in(
            self.host.namespace,
            management.set_workers,
            self.host.management_port,
            workers,
            workers,
            120,
            model=SINGLE_MODEL_NAME,
        )

    def url_and_headers(self, name):
        if name == "mms":
            return self.mms.url, []
        if name == "flask":
            return self.flask.url, []
        return self.front_url, [f"Authorization: Bearer {self.token}"]

    def check(self, name, clients=16):
        """All 1023 inputs, `clients` at a time; raise on any wrong answer."""
        url, headers = self.url_and_headers(name)
        cafile = self.cafile if url.startswith("https") else None
        header_dict = dict(h.split(": ", 1) for h in headers)

        numbers = range(MIN_INPUT, MAX_INPUT + 1)
        wrong = answers.ask_all(lambda number: predict(url, number, 10, cafile, header_dict), numbers, clients)
        if wrong:
            raise SystemExit(f"{NAMES[name]}: {answers.summary(wrong, len(numbers))}")
        return len(numbers)

    def run(self, name, connections, seconds, warmup=0):
        """One timed wrk run, after `warmup` untimed seconds at the same
        concurrency: the previous run's leftovers (queued jobs, the old nginx
        workers of a reload, the JVM's garbage) are not charged to this one."""
        front = name in ROUTINGS or name == CONTROL
        if name == CONTROL:
            self.fleet.update_front(routing="batched")  # a reload even when already batched
        elif front:
            self.route(name)
        url, headers = self.url_and_headers(name)
        try:
            if warmup:
                run_wrk(url, connections, warmup, threads=2, log_file=self.wrk_log, headers=headers)
            before = self.answered() if front else None
            result = run_wrk(url, connections, seconds, threads=2, log_file=self.wrk_log, headers=headers)
        except LoadError as error:
            raise SystemExit(f"{NAMES[name]} c={connections}: {error}")
        row = {
            "config": NAMES[name],
            "routing": name,
            "concurrency": connections,
            "req_per_s": round(result.good_per_second, 1),
            "p50_ms": result.p50_ms,
            "p90_ms": result.p90_ms,
            "p99_ms": result.p99_ms,
            "max_ms": result.max_ms,
            "errors": result.errors,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        if front:  # which registration answered (the exporter may lag a few requests at the end)
            batched, single = (after - first for after, first in zip(self.answered(), before))
            row["batch1_share"] = round(single / (batched + single), 4) if batched + single else None
        return row


def median(rows, name, c, key):
    values = [r[key] for r in rows if r["routing"] == name and r["concurrency"] == c]
    return statistics.median(values) if values else None


def spread(rows, name, c, key):
    values = [r[key] for r in rows if r["routing"] == name and r["concurrency"] == c]
    return (min(values), max(values)) if values else (None, None)


def paired(rows, name, other, c, key):
    """Median and range over rounds of name/other, each round's pair measured
    back to back (slow drift of a shared machine's load cancels out)."""
    ratios = paired_ratios(rows, name, other, c, key)
    return statistics.median(ratios), min(ratios), max(ratios)


def paired_ratios(rows, name, other, c, key):
    """name/other in each round where both ran."""

    def value(routing, round_index):
        return next(
            (r[key] for r in rows if r["routing"] == routing and r["concurrency"] == c and r["round"] == round_index),
            None,
        )

    return [
        value(name, i) / value(other, i)
        for i in sorted({r["round"] for r in rows})
        if value(name, i) and value(other, i)
    ]


def threshold_from(rows, levels):
    """Largest level up to which batch 1 had more req/s than batching at every level."""
    threshold = 0
    for c in levels:
        if median(rows, "single", c, "req_per_s") > median(rows, "batched", c, "req_per_s"):
            threshold = c
        else:
            break
    return threshold


def derive(targets, args):
    say(f"phase 1: worker split and threshold ({args.derive_rounds} round(s) of {args.derive_seconds} s per point)")
    per_split, measured = {}, {split: [] for split in args.splits}
    # Rounds outside, splits inside: a drift in the machine's load hits every split alike.
    for round_index in range(args.derive_rounds):
        for split in args.splits:
            targets.scale_single(split)
            for c in args.derive_levels:
                order = ROUTINGS[:2] if round_index % 2 == 0 else ROUTINGS[1::-1]
                for name in order:
                    row = dict(targets.run(name, c, args.derive_seconds), split=split, round=round_index)
                    measured[split].append(row)
                    print(json.dumps(row), flush=True)
    for split, rows in measured.items():
        threshold = threshold_from(rows, args.derive_levels)
        # Predicted adaptive: batch 1 up to the threshold, batched above.
        predicted = sum(
            median(rows, "single" if c <= threshold else "batched", c, "req_per_s") for c in args.derive_levels
        )
        per_split[split] = {"threshold": threshold, "predicted_req_per_s_sum": round(predicted), "rows": rows}
        say(f"batch-1 workers {split}: threshold {threshold}, predicted adaptive {predicted:,.0f} req/s summed")
    best = max(per_split, key=lambda s: per_split[s]["predicted_req_per_s_sum"])
    return best, per_split[best]["threshold"], per_split


# Every order of the three routings: over 6 rounds each routing runs first,
# second and third equally often and follows each other one equally often. (A
# rotation would always run adaptive right after batch 1, whose saturated runs
# leave the most behind.)
ORDERS = list(itertools.permutations(ROUTINGS))


def compare(targets, args):
    say(f"phase 2: {args.rounds} rounds, {args.warmup} s untimed + {args.duration} s per point, levels {args.levels}")
    rows = []
    for round_index in range(args.rounds):
        for c in args.levels:
            order = list(ORDERS[round_index % len(ORDERS)])
            if c == 1:
                order += ["mms", "flask"]
            if c == max(args.levels):
                order.insert(round_index % (len(order) + 1), CONTROL)
            for name in order:
                row = dict(targets.run(name, c, args.duration, args.warmup), round=round_index)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def verdicts(rows, levels):
    """The issue's figures, each (text, holds). A ratio is the median over rounds
    of the two configurations' figures in the same round (run back to back)."""
    out = []

    def ratio_text(ratio):
        return f"{ratio[0]:.2f}x (rounds {ratio[1]:.2f}–{ratio[2]:.2f})"

    if 1 in levels:  # the baselines run at c=1 only
        a_p50, b1_p50, fl_p50 = (median(rows, n, 1, "p50_ms") for n in ("adaptive", "mms", "flask"))
        vs_b1, vs_flask = paired(rows, "adaptive", "mms", 1, "p50_ms"), paired(rows, "adaptive", "flask", 1, "p50_ms")
        out.append(
            (
                f"c=1 p50: adaptive {a_p50:.2f} ms vs MMS batch 1 straight {b1_p50:.2f} ms: "
                f"{ratio_text(vs_b1)}; bar 1.3x",
                vs_b1[0] <= 1.3,
            )
        )
        out.append(
            (f"c=1 p50: adaptive vs Flask sync {fl_p50:.2f} ms: {ratio_text(vs_flask)}; bar 2x", vs_flask[0] <= 2)
        )
    top = max(levels)
    a_rps, b_rps = median(rows, "adaptive", top, "req_per_s"), median(rows, "batched", top, "req_per_s")
    a_p99, b_p99 = median(rows, "adaptive", top, "p99_ms"), median(rows, "batched", top, "p99_ms")
    rps, p99 = paired(rows, "adaptive", "batched", top, "req_per_s"), paired(rows, "adaptive", "batched", top, "p99_ms")
    out.append(
        (
            f"c={top} req/s: adaptive {a_rps:,.0f} vs batched-only {b_rps:,.0f}: {ratio_text(rps)}; bar 0.9x",
            rps[0] >= 0.9,
        )
    )
    # "No worse" can only be told apart from noise as far as batched-only differs
    # from itself: the A/A control's typical spread, max(r, 1/r) over rounds.
    control = paired(rows, CONTROL, "batched", top, "p99_ms")
    spread_aa = statistics.median(max(r, 1 / r) for r in paired_ratios(rows, CONTROL, "batched", top, "p99_ms"))
    share = median(rows, "adaptive", top, "batch1_share")
    out.append(
        (
            f"c={top} p99: adaptive {a_p99:.2f} ms vs batched-only {b_p99:.2f} ms: {ratio_text(p99)}; "
            f"A/A control (batched-only again / batched-only): {ratio_text(control)}, typical spread "
            f"{spread_aa:.2f}x; adaptive sent {share:.2%} of these requests to batch 1; "
            f"bar: no worse, i.e. at most 1.00x or within the A/A spread",
            p99[0] <= max(1.0, spread_aa),
        )
    )
    for c in levels:
        b, s, a = (median(rows, n, c, "req_per_s") for n in ROUTINGS)
        worse = min(
            paired(rows, "adaptive", "batched", c, "req_per_s")[0],
            paired(rows, "adaptive", "single", c, "req_per_s")[0],
        )
        best = max(
            paired(rows, "adaptive", "batched", c, "req_per_s")[0],
            paired(rows, "adaptive", "single", c, "req_per_s")[0],
        )
        out.append(
            (
                f"c={c}: adaptive {a:,.0f} req/s vs batched {b:,.0f} and batch 1 {s:,.0f} "
                f"(adaptive / each, paired: {worse:.2f}x and {best:.2f}x); bar: not below both",
                best >= 1.0 or a >= min(b, s),
            )
        )
    return out


def write(rows, derivation, split, threshold, args, output, settings_lines):
    output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (output / "adaptive.json").write_text(
        json.dumps(
            {
                "run": stamp,
                "split": split,
                "threshold": threshold,
                "rows": rows,
                "derivation": {str(k): v for k, v in derivation.items()},
            },
            indent=1,
        )
    )
    lines = [f"# Adaptive batching through the front door ({stamp})", ""]
    lines += [f"- {line}" for line in settings_lines] + [""]
    lines += [
        "## Phase 1: worker split and threshold",
        "",
        "Median req/s over the phase's rounds; the threshold is the largest level up to which batch 1 "
        "beat batching at every level.",
        "",
    ]
    levels = args.derive_levels
    lines += [
        "| batch-1 workers | routing | " + " | ".join(f"c={c}" for c in levels) + " |",
        "|---|---|" + "---:|" * len(levels),
    ]
    for s, found in derivation.items():
        for name in ROUTINGS[:2]:
            lines.append(
                f"| {s} | {name} | "
                + " | ".join(f"{median(found['rows'], name, c, 'req_per_s'):,.0f}" for c in levels)
                + " |"
            )
    lines += [""] + [
        f"- batch-1 workers {s}: threshold **{f['threshold']}**, predicted adaptive "
        f"{f['predicted_req_per_s_sum']:,} req/s summed over the levels"
        for s, f in derivation.items()
    ]
    lines += [
        "",
        f"Chosen: **{split} batch-1 worker(s)** beside the 2 batched ones, **threshold {threshold}** "
        f"(batch 1 while at most {threshold} client connections are open).",
        "",
    ]
    lines += [
        "## Phase 2: side by side",
        "",
        f"Median over {args.rounds} interleaved rounds (the routings in every order) of {args.duration} s "
        f"per point, each after {args.warmup} s untimed at the same target and concurrency (range in brackets); "
        "every run's errors are counted (non-2xx or socket errors). *to batch 1*: the share of the timed "
        f"run's requests the batch-1 registration answered (the host's metrics). At c={max(args.levels)} "
        "batched-only runs twice per round (the second after its own reload): the A/A control.",
        "",
        "| c | configuration | req/s (range) | p50 ms (range) | p99 ms (range) | errors | to batch 1 |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in args.levels:
        for name in (*ROUTINGS, CONTROL, "mms", "flask"):
            if median(rows, name, c, "req_per_s") is None:
                continue
            rps, p50, p99 = (median(rows, name, c, k) for k in ("req_per_s", "p50_ms", "p99_ms"))
            (r0, r1), (l0, l1), (q0, q1) = (spread(rows, name, c, k) for k in ("req_per_s", "p50_ms", "p99_ms"))
            errors = sum(r["errors"] for r in rows if r["routing"] == name and r["concurrency"] == c)
            bold = "**" if name == "adaptive" else ""
            shares = [
                r["batch1_share"]
                for r in rows
                if r["routing"] == name and r["concurrency"] == c and r.get("batch1_share") is not None
            ]
            share = f"{statistics.median(shares):.1%}" if shares else ""
            lines.append(
                f"| {c} | {bold}{NAMES[name]}{bold} | {rps:,.0f} ({r0:,.0f}–{r1:,.0f}) | "
                f"{p50:.2f} ({l0:.2f}–{l1:.2f}) | {p99:.2f} ({q0:.2f}–{q1:.2f}) | {errors} | {share} |"
            )
    checked = verdicts(rows, args.levels)
    lines += ["", "## The issue's figures", ""]
    lines += [f"- {'holds' if ok else '**does not hold**'}: {text}" for text, ok in checked]
    lines += ["", "![req/s and p99 vs concurrency: batched, batch 1, adaptive](requests_per_second.png)", ""]
    (output / "adaptive.md").write_text("\n".join(lines))
    plot_rows = [dict(r, kind="flask" if r["routing"] == "flask" else "front") for r in rows if r["routing"] != CONTROL]
    plot_rows = [
        {**r, **{k: median(rows, r["routing"], r["concurrency"], k) for k in ("req_per_s", "p99_ms")}}
        for r in plot_rows
        if r["round"] == 0
    ]
    report.plot(
        plot_rows,
        output / "requests_per_second.png",
        f"through the front door: batched, batch 1, adaptive (threshold {threshold}); medians of "
        f"{args.rounds} rounds ({stamp})",
    )
    print("\n".join(lines), flush=True)
    return all(ok for _, ok in checked)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--levels",
        type=int_list,
        default=[1, 2, 4, 8, 16, 32, 64],
        help="phase 2 concurrencies, the ramp (default 1,2,4,8,16,32,64)",
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="phase 2 rounds (default 6: every order of the three routings once)"
    )
    parser.add_argument("--duration", type=int, default=5, help="phase 2 seconds per point (default 5)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="phase 2 untimed seconds before each timed run, same target and concurrency (default 1)",
    )
    parser.add_argument(
        "--splits",
        type=int_list,
        default=[1, 2],
        help="workers of the batch-1 registration to try in phase 1 (default 1,2)",
    )
    parser.add_argument(
        "--derive-levels",
        type=int_list,
        default=[1, 2, 3, 4, 6, 8, 12, 16],
        help="phase 1 concurrencies (default 1,2,3,4,6,8,12,16)",
    )
    parser.add_argument("--derive-rounds", type=int, default=2, help="phase 1 rounds (default 2)")
    parser.add_argument("--derive-seconds", type=int, default=3, help="phase 1 seconds per point (default 3)")
    parser.add_argument("--threshold", type=int, help="skip phase 1: use this threshold (and --splits' first value)")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "adaptive")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server is stopped
    ensure_tools()
    if not Path(args.mar).is_file():
        raise SystemExit(f"{args.mar} does not exist: run ./build_mar.sh")
    directory = Path(tempfile.mkdtemp(prefix="fbz-adapt-"))
    say(f"work folder (fleet, servers, wrk log): {directory}")
    fleet = Fleet(directory / "fleet")
    mms = PrivateMms(
        model_store=Path(args.mar).parent, run_dir=directory / "mms", batch_size=1, max_batch_delay=0, workers=2
    )
    (directory / "flask").mkdir()
    flask = PrivateGunicorn("sync", workers=2, run_dir=directory / "flask")
    started = time.monotonic()
    load_before = os.getloadavg()
    try:
        state = fleet.start(
            Options(
                hosts=1,
                workers=2,
                single_workers=max(args.splits),
                front_port=free_port(),
                mar=args.mar,
                adaptive_threshold=args.threshold or 1,
            )
        )
        mms.start()
        flask.start()
        targets = Targets(fleet, state, mms, flask, directory / "wrk.log")
        for name in ("batched", "single", "adaptive", "mms", "flask"):
            if name in ROUTINGS:
                targets.route(name)
            say(f"{NAMES[name]}: {targets.check(name)} answers right (16 clients at once)")
            if name == "adaptive":
                before = targets.answered()[1]
                checked = targets.check(name, clients=1)
                to_single = targets.answered()[1] - before
                # The first request or two may still find the 16-client check's
                # connections closing (counted as open), and go batched.
                if to_single < checked - 2:
                    raise SystemExit(f"adaptive sent only {to_single:.0f} of {checked} one-client requests to batch 1")
                say(f"{NAMES[name]}: {checked} answers right (one client, {to_single:.0f} by the batch-1 registration)")
        if args.threshold:
            split, threshold, derivation = args.splits[0], args.threshold, {}
            targets.scale_single(split)
        else:
            split, threshold, derivation = derive(targets, args)
            if threshold < 1:
                raise SystemExit("batch 1 never beat batching at c=1: no threshold to ship")
            targets.scale_single(split)
        say(f"batch-1 workers {split}, threshold {threshold}")
        targets.route("adaptive", threshold)
        rows = compare(targets, args)
    finally:
        for stop in (fleet.stop, mms.stop, flask.stop):
            try:
                stop()
            except Exception as error:  # keep stopping the others
                print(f"adaptive.py: stopping failed: {error}", file=sys.stderr)
    load_after = os.getloadavg()
    minutes = (time.monotonic() - started) / 60
    info = machine.describe(wrk_binary(), find_nginx())
    settings_lines = [
        f"one run, {minutes:.1f} min; one fleet host (network namespace) with MMS: `fizbuz_package` batch 16, "
        f"delay 1 ms, 2 workers and `fizbuz_package_single` batch 1, delay 0, {split} worker(s); nginx front "
        f"door (HTTPS, bearer token, {state['front']['workers']} workers) switched between routings by a "
        "graceful reload",
        "baselines at c=1: `mms-b1-w2 straight` = MMS batch 1, 2 workers, plain HTTP, no front door; "
        "`flask-sync` = Flask + gunicorn, 2 sync workers (serving/flask/private.py)",
        "wrk with bench/post_inputs.lua (POST, n cycling through 0..1022), 2 threads (1 at c=1); req/s counts 2xx only",
        "answers: all 1023 inputs checked on every target before timing (16 clients at once; adaptive also "
        "with one client, so both registrations answered)",
        "machine: " + "; ".join(f"{k} {v}" for k, v in info if k in ("CPU", "packages", "wrk", "nginx")),
        f"load average (1/5/15 min) before: {'/'.join(f'{v:.2f}' for v in load_before)}, after: "
        f"{'/'.join(f'{v:.2f}' for v in load_after)}; the 2 cores are shared with other engineers' jobs",
    ]
    good = write(rows, derivation, split, threshold, args, args.output, settings_lines)
    shutil.rmtree(directory, ignore_errors=True)
    return 0 if good else 3


if __name__ == "__main__":
    sys.exit(main())
