#!/usr/bin/env python3
"""Predictions per second through the book's three-command flow
(AI.TENSORSET, AI.MODELRUN, AI.TENSORGET, pipelined per client) at 1, 16 and
64 clients, against a redis-server with the module that this script starts
on a free port and stops again. Every answer is checked against FizzBuzz.

    .venv/bin/python serving/redis/bench.py [--seconds 5] [--clients 1 16 64]

The load generator is Python (raw sockets, requests encoded in advance, one
process per core), so it shares the 2 cores with Redis: the figures are a
floor for the module, not a ceiling.
"""

import argparse
import multiprocessing
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from fizbuz_codec import MAX_INPUT, encode, true_class  # noqa: E402
from ports import free_port  # noqa: E402

HEADER = b"*3\r\n+FLOAT\r\n*2\r\n:1\r\n:4\r\n$16\r\n"
REPLY_LEN = 5 + 5 + len(HEADER) + 16 + 2  # +OK, +OK, the TENSORGET triple


def resp(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def flow(client_id, n):
    """The book's three commands for input n, as one pipelined write."""
    bits = struct.pack("10f", *encode(n + 1))
    a, out = f"in{client_id}", f"out{client_id}"
    return (resp("AI.TENSORSET", a, "FLOAT", 1, 10, "BLOB", bits)
            + resp("AI.MODELRUN", "model", "INPUTS", a, "OUTPUTS", out)
            + resp("AI.TENSORGET", out, "BLOB"))


def answer(reply):
    logits = struct.unpack("4f", reply[-18:-2])
    return max(range(4), key=logits.__getitem__)


def load(port, first_id, clients, start_at, stop_at, results):
    """One process: `clients` connections, each with one flow in flight."""
    sel = selectors.DefaultSelector()
    state = {}
    for cid in range(first_id, first_id + clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        requests = [flow(cid, n) for n in range(MAX_INPUT + 1)]
        state[sock] = {"requests": requests, "n": cid % (MAX_INPUT + 1), "buf": b""}
        sel.register(sock, selectors.EVENT_READ)
    while time.time() < start_at:
        time.sleep(0.001)
    for sock, st in state.items():
        sock.sendall(st["requests"][st["n"]])
    done = wrong = 0
    while time.time() < stop_at:
        for key, _ in sel.select(timeout=0.5):
            sock, st = key.fileobj, state[key.fileobj]
            st["buf"] += sock.recv(65536)
            if len(st["buf"]) < REPLY_LEN and not st["buf"].startswith(b"-"):
                continue
            reply, st["buf"] = st["buf"][:REPLY_LEN], st["buf"][REPLY_LEN:]
            if reply.startswith(b"-") or answer(reply) != true_class(st["n"] + 1):
                wrong += 1
            done += 1
            st["n"] = (st["n"] + 1) % (MAX_INPUT + 1)
            sock.sendall(st["requests"][st["n"]])
    results.put((done, wrong))


def measure(port, clients, seconds):
    procs = min(clients, os.cpu_count() or 1)
    results = multiprocessing.Queue()
    start_at = time.time() + 1.0 + clients * 0.01  # after every connection is made
    workers = []
    for p in range(procs):
        share = clients // procs + (1 if p < clients % procs else 0)
        first = sum(clients // procs + (1 if q < clients % procs else 0) for q in range(p))
        workers.append(multiprocessing.Process(target=load, args=(port, first, share, start_at,
                                                                  start_at + seconds, results)))
    for w in workers:
        w.start()
    totals = [results.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join(30)
    done, wrong = map(sum, zip(*totals))
    return done / seconds, wrong


def cpu_seconds(r):
    cpu = r.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per point (default: %(default)s)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--batchsize", type=int, default=64, help="the model's BATCHSIZE (default: %(default)s)")
    parser.add_argument("--module", default=ROOT / "build" / "redis" / "fizbuz_ai.so")
    parser.add_argument("--model", default=ROOT / "build" / "fizbuz.pt")
    args = parser.parse_args(argv)
    import redis

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fizbuz-redis-bench-") as folder:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
                                   "--save", "", "--appendonly", "no", "--logfile", f"{folder}/redis.log",
                                   "--maxclients", "1000", "--loadmodule", str(args.module)])
        try:
            r = redis.Redis(port=port)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if r.ping():
                        break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.05)
            r.execute_command("AI.MODELSTORE", "model", "TORCH", "CPU", "BATCHSIZE", args.batchsize,
                              "BLOB", Path(args.model).read_bytes())
            # Redis's CPU time per prediction (all its threads) does not depend on
            # how busy the shared box is, unlike predictions per second.
            print("| clients | predictions/s | wrong | runs per forward | redis CPU µs per prediction |\n"
                  "|---:|---:|---:|---:|---:|")
            for clients in args.clients:
                r.execute_command("AI.INFO", "model", "RESETSTAT")
                cpu_before = cpu_seconds(r)
                rate, wrong = measure(port, clients, args.seconds)
                cpu = cpu_seconds(r) - cpu_before
                info = dict(zip(*[iter(r.execute_command("AI.INFO", "model"))] * 2))
                per_forward = info[b"calls"] / max(info[b"forwards"], 1)
                per_prediction = 1e6 * cpu / max(info[b"calls"], 1)
                print(f"| {clients} | {rate:,.0f} | {wrong} | {per_forward:.1f} | {per_prediction:.0f} |", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
