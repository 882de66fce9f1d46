#!/usr/bin/env python3
"""Soak through the front door: an answer-checking load for N minutes (default
10) on a two-host fleet, with one MMS worker killed (-9) every minute, hosts
taken in turn. Goal from issue 11: 0 failed, 0 wrong.

Starts its own fleet (network namespaces, free ports, temp folder) and stops it.
Writes bench/results/front/soak.{json,md}.
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

from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE
from fizbuz.lifecycle import free_ports
from serving.front import client, tokens
from serving.front.fleet import Fleet, Options

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kill-every", type=float, default=60, help="seconds between kills (default: 60)")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", default=str(HERE / "results" / "front"))
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="fbz-soak-"))
    fleet = Fleet(directory)
    kills = []
    try:
        front_port, metrics_port = free_ports(2)
        state = fleet.start(Options(hosts=2, workers=2, front_port=front_port, metrics_port=metrics_port, mar=args.mar))
        hosts = fleet.hosts(state)
        address, port = state["front"]["listen"].rsplit(":", 1)
        token = tokens.read(fleet.token_file)["default"]
        started = time.monotonic()
        end = started + args.minutes * 60
        with client.Load(address, int(port), state["front"]["certificate"], token, args.concurrency) as load:
            next_kill = started + args.kill_every
            while time.monotonic() < end:
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))  # the soak's clock, not a readiness wait
                if time.monotonic() >= next_kill:
                    host = hosts[len(kills) % len(hosts)]
                    # A worker of the batched registration: the one the load reaches.
                    batched = {str(w["id"]) for w in host.ready_workers()}
                    workers = {wid: p for wid, p in host.worker_processes().items() if wid in batched}
                    if workers:
                        victim = workers[sorted(workers)[0]]
                        os.kill(victim.pid, signal.SIGKILL)
                        kills.append(
                            {"at_s": round(time.monotonic() - started, 1), "host": host.name, "pid": victim.pid}
                        )
                        print(
                            f"killed worker {victim.pid} of {host.name} at {kills[-1]['at_s']} s; "
                            f"{load.result.sent} sent, {len(load.result.failed)} failed so far",
                            flush=True,
                        )
                    next_kill += args.kill_every
        summary = load.result.summary()
        summary.update(
            minutes=args.minutes,
            concurrency=args.concurrency,
            kills=kills,
            req_per_s=round(summary["sent"] / (args.minutes * 60), 1),
            retried_in_access_log=sum(
                1 for line in fleet.door.access_log.read_text().splitlines() if "ustatus=50" in line
            ),
        )
    finally:
        fleet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "soak.json").write_text(json.dumps(summary, indent=2))
    text = (
        f"# Front door soak ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; a shared 2-core machine)\n\n"
        f"{args.minutes:g} minutes, {args.concurrency} clients (Python, answer-checking), 2 hosts x 2 workers, "
        f"a worker killed every {args.kill_every:g} s ({len(kills)} kills)\n\n"
        f"| sent | failed | wrong | resent (reused connection closed) | p50 ms | p99 ms | max ms | "
        f"requests retried by the front door |\n|---|---|---|---|---|---|---|---|\n"
        f"| {summary['sent']} | {summary['failed']} | {summary['wrong']} | {summary['resent']} | "
        f"{summary['p50_ms']} | {summary['p99_ms']} | {summary['max_ms']} | {summary['retried_in_access_log']} |\n"
    )
    (output / "soak.md").write_text(text)
    print(text)
    return 0 if summary["failed"] == 0 and summary["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
