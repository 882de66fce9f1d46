"""Kill -9 one MMS worker while an answer-checking load runs; measure the damage.

Reports how many requests failed (and with what), whether any answer was wrong,
and how long until the model had all its workers READY again (a new process in
place of the killed one). Runs its own private MMS on free ports.

Example: python -m loadtest.faults --trials 5 --concurrency 1 8 64
"""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time

from loadtest import loadgen
from serving.mms.cli import DEFAULTS
from serving.mms.private import PrivateMms


async def kill_worker_under_load(
    server, concurrency, warm_answers=200, answers_after=500, recovery_timeout=60.0, hold=False
):
    """One kill -9 of a worker while `concurrency` clients ask; the load runs by counts:
    `warm_answers` before the kill (a steady state), `answers_after` once the model has
    all its workers back. Failures whose body says "Worker died" are the requests the
    killed worker held in flight (MMS fails the job of a worker that disconnects).

    A worker spends most of its time between batches, so a plain kill often meets
    none. With `hold`, the worker is stopped (SIGSTOP) first: MMS hands it the next
    batch, which it cannot answer, while the other workers serve `warm_answers` more;
    the kill then always meets that batch in flight."""
    result = loadgen.LoadResult()
    stop = asyncio.Event()
    load = asyncio.create_task(loadgen.run_load(server.inference_port, concurrency, result=result, stop=stop))
    try:
        if not await wait_for(lambda: result.answered >= warm_answers, recovery_timeout, load):
            raise RuntimeError(f"the load did not reach {warm_answers} answers before the kill")
        before = server.workers()
        victim = before[sorted(before)[0]]
        served = True
        if hold:
            os.kill(victim.pid, signal.SIGSTOP)
            answered = result.answered
            try:
                served = await wait_for(lambda: result.answered >= answered + warm_answers, recovery_timeout, load)
            finally:
                # Whatever happened, no worker is left stopped. MMS itself may have killed it
                # already: a batch unanswered for default_response_timeout ends its worker.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim.pid, signal.SIGKILL)
        else:
            os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        if not served:
            raise RuntimeError("the other workers did not serve while one was stopped")

        def recovered():
            pids = {p.pid for p in server.workers().values()}
            return len(server.ready_workers()) == len(before) and len(pids) == len(before) and victim.pid not in pids

        recovered_after = None
        if await wait_for(recovered, recovery_timeout, load):
            recovered_after = time.monotonic() - killed  # a figure for the report, never asserted on
            answered = result.answered
            await wait_for(lambda: result.answered >= answered + answers_after, recovery_timeout, load)
    finally:
        stop.set()
        await load
    return {
        "concurrency": concurrency,
        "requests": result.sent,
        "answered": result.answered,
        "failed": len(result.failures),
        "wrong": len(result.wrong),
        "transport_errors": sum(result.transport_errors.values()),
        "failure_statuses": sorted({status for _, status, _ in result.failures}),
        "failure_bodies": sorted({body.decode("utf-8", "replace").strip() for _, _, body in result.failures}),
        "worker_died": sum(b"Worker died" in body for _, _, body in result.failures),
        "recovered_after_s": None if recovered_after is None else round(recovered_after, 2),
        "max_latency_ms": result.summary()["max_ms"],
    }


async def wait_for(condition, timeout, load, interval=0.05):
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False); a
    load that ended early (it raised) raises here."""
    deadline = time.monotonic() + timeout
    while not condition():
        if load.done():
            load.result()  # raises the load's error
            return condition()
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)  # poll interval
    return True


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=3, help="kills per concurrency (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=DEFAULTS["workers"], help="default: %(default)s")
    parser.add_argument(
        "--hold", action="store_true", help="stop the worker before its kill, so that the kill meets a batch in flight"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(
        f"{'c':>4} {'trial':>5} {'requests':>9} {'failed':>6} {'wrong':>5} {'recovered s':>11} "
        f"{'max ms':>8}  failure statuses"
    )
    with PrivateMms(batch_size=args.batch_size, workers=args.workers) as server:
        for concurrency in args.concurrency:
            for trial in range(1, args.trials + 1):
                row = asyncio.run(kill_worker_under_load(server, concurrency, hold=args.hold))
                print(
                    f"{concurrency:>4} {trial:>5} {row['requests']:>9} {row['failed']:>6} {row['wrong']:>5} "
                    f"{row['recovered_after_s']!s:>11} {row['max_latency_ms']:>8}  {row['failure_statuses']}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
