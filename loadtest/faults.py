"""Kill -9 one MMS worker while an answer-checking load runs; measure the damage.

Reports how many requests failed (and with what), whether any answer was wrong,
and how long until the model had all its workers READY again (a new process in
place of the killed one). Runs its own private MMS on free ports.

Example: python -m loadtest.faults --trials 5 --concurrency 1 8 64
"""

import argparse
import asyncio
import os
import signal
import sys
import time

from loadtest import loadgen
from serving.mms.cli import DEFAULTS
from serving.mms.private import PrivateMms


async def kill_worker_under_load(server, concurrency, duration=6.0, kill_after=2.0, recovery_timeout=60.0):
    result = loadgen.LoadResult()
    load = asyncio.create_task(
        loadgen.run_load(server.inference_port, concurrency, duration=duration, result=result))
    await asyncio.sleep(kill_after)  # let the load reach a steady state first
    before = server.workers()
    victim = before[sorted(before)[0]]
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    recovered_after = None
    while time.monotonic() - killed < recovery_timeout:
        ready = server.ready_workers()
        pids = {p.pid for p in server.workers().values()}
        if len(ready) == len(before) and len(pids) == len(before) and victim.pid not in pids:
            recovered_after = time.monotonic() - killed
            break
        await asyncio.sleep(0.05)  # poll interval
    await load
    return {
        "concurrency": concurrency, "requests": result.sent, "answered": result.answered,
        "failed": len(result.failures), "wrong": len(result.wrong),
        "transport_errors": sum(result.transport_errors.values()),
        "failure_statuses": sorted({status for _, status, _ in result.failures}),
        "failure_bodies": sorted({body.decode("utf-8", "replace").strip() for _, _, body in result.failures}),
        "recovered_after_s": None if recovered_after is None else round(recovered_after, 2),
        "max_latency_ms": result.summary()["max_ms"],
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m loadtest.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="kills per concurrency (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=DEFAULTS["workers"], help="default: %(default)s")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f"{'c':>4} {'trial':>5} {'requests':>9} {'failed':>6} {'wrong':>5} {'recovered s':>11} "
          f"{'max ms':>8}  failure statuses")
    with PrivateMms(batch_size=args.batch_size, workers=args.workers) as server:
        for concurrency in args.concurrency:
            for trial in range(1, args.trials + 1):
                row = asyncio.run(kill_worker_under_load(server, concurrency))
                print(f"{concurrency:>4} {trial:>5} {row['requests']:>9} {row['failed']:>6} {row['wrong']:>5} "
                      f"{row['recovered_after_s']!s:>11} {row['max_latency_ms']:>8}  {row['failure_statuses']}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
