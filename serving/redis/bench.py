#!/usr/bin/env python3
"""Predictions per second through the book's three-command flow
(AI.TENSORSET, AI.MODELRUN, AI.TENSORGET, pipelined per client) at 1, 16 and
64 clients, against a redis-server with the module that this script starts
on a free port and stops again. Every answer is checked against FizzBuzz.

    .venv/bin/python serving/redis/bench.py [--seconds 5] [--clients 1 16 64]

The load generator is Python (raw sockets, requests encoded in advance, one
process per core), so it shares the 2 cores with Redis: the figures are a
floor for the module, not a ceiling. The server has the ACL users of
serving/redis/acl.py (passwords in its temporary folder): the model is
stored as admin, the load runs as runner; started by root, it runs as the
unprivileged user start_redis.sh uses.
"""

import argparse
import multiprocessing
import os
import selectors
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import redis

from fizbuz import settings
from fizbuz.contract import REDIS_MODULE, TORCHSCRIPT_PATH
from fizbuz.lifecycle import PidFile, free_port, running_server
from fizbuz_codec import MAX_INPUT, encode, true_class
from serving.redis.acl import ADMIN, RUNNER, Secrets
from serving.redis.cli import as_user, unprivileged_user
from serving.redis.ready import answers_ping

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
    return (
        resp("AI.TENSORSET", a, "FLOAT", 1, 10, "BLOB", bits)
        + resp("AI.MODELRUN", "model", "INPUTS", a, "OUTPUTS", out)
        + resp("AI.TENSORGET", out, "BLOB")
    )


def answer(reply):
    logits = struct.unpack("4f", reply[-18:-2])
    return max(range(4), key=logits.__getitem__)


def authenticated(port, password):
    """A raw connection, logged in as the runner before the load starts."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(resp("AUTH", RUNNER, password))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("the server closed the connection during AUTH")
        reply += chunk
    if reply != b"+OK\r\n":
        raise ConnectionError(f"AUTH as {RUNNER} failed: {reply!r}")
    return sock


def load(port, password, first_id, clients, start_at, stop_at, results):
    """One process: `clients` connections, each with one flow in flight."""
    sel = selectors.DefaultSelector()
    state = {}
    for cid in range(first_id, first_id + clients):
        sock = authenticated(port, password)
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


def measure(port, password, clients, seconds):
    procs = min(clients, os.cpu_count() or 1)
    results = multiprocessing.Queue()
    start_at = time.time() + 1.0 + clients * 0.01  # after every connection is made
    workers = []
    for p in range(procs):
        share = clients // procs + (1 if p < clients % procs else 0)
        first = sum(clients // procs + (1 if q < clients % procs else 0) for q in range(p))
        workers.append(
            multiprocessing.Process(
                target=load, args=(port, password, first, share, start_at, start_at + seconds, results)
            )
        )
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
    parser.add_argument("--module", default=REDIS_MODULE)
    parser.add_argument("--model", default=TORCHSCRIPT_PATH)
    args = parser.parse_args(argv)

    port = free_port()
    user = unprivileged_user(settings.value("redis_run_as") or "")
    owner = None if user is None else user[1:]
    with tempfile.TemporaryDirectory(prefix="fizbuz-redis-bench-") as folder:
        secrets = Secrets(Path(folder) / "secrets").ensure()
        data = Path(folder) / "data"
        data.mkdir(mode=0o700)
        if owner is not None:
            os.chmod(folder, 0o711)  # the server's user passes through to data/
            os.chown(data, *owner)
        acl = secrets.write_acl(data / "users.acl", owner)
        command = as_user(
            [
                "redis-server",
                "--port",
                port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "1000",
                "--aclfile",
                acl,
                "--dir",
                data,
                "--logfile",
                data / "redis.log",
                "--loadmodule",
                args.module,
            ],
            user,
        )
        r = redis.Redis(port=port, **secrets.credentials(ADMIN))
        with running_server(
            command,
            PidFile(f"{folder}/redis.pid", marker=str(port)),
            f"{folder}/stderr.log",
            ready=lambda: answers_ping(r),
            what=f"redis-server on port {port}",
            timeout=30,
        ):
            run_points(args, port, r, secrets.password(RUNNER))
    return 0


def run_points(args, port, r, password):
    """Store the model as admin, then one table row per client count."""
    r.execute_command(
        "AI.MODELSTORE", "model", "TORCH", "CPU", "BATCHSIZE", args.batchsize, "BLOB", Path(args.model).read_bytes()
    )
    # Redis's CPU time per prediction (all its threads) does not depend on
    # how busy the shared box is, unlike predictions per second.
    print(
        "| clients | predictions/s | wrong | runs per forward | redis CPU µs per prediction |\n"
        "|---:|---:|---:|---:|---:|"
    )
    for clients in args.clients:
        r.execute_command("AI.INFO", "model", "RESETSTAT")
        cpu_before = cpu_seconds(r)
        rate, wrong = measure(port, password, clients, args.seconds)
        cpu = cpu_seconds(r) - cpu_before
        info = dict(zip(*[iter(r.execute_command("AI.INFO", "model"))] * 2))
        per_forward = info[b"calls"] / max(info[b"forwards"], 1)
        per_prediction = 1e6 * cpu / max(info[b"calls"], 1)
        print(f"| {clients} | {rate:,.0f} | {wrong} | {per_forward:.1f} | {per_prediction:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
