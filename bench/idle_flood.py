#!/usr/bin/env python3
"""A token holder's latency while connections without a token flood the front
door (issue 22): 2,000 connections held open (most idle, some sending a
request's headers and never finishing), kept at that count (a dropped one is
opened again at once), against the same door idle, in interleaved rounds.

Goal from issue 22: the holder's p99 within 2x of the idle door's. The test
(tests/front/test_door_hardening.py) checks counts and states; this script
measures the ratio, side by side in one run.

Starts its own fleet (network namespaces, free ports, temp folder) and stops it.
Writes bench/results/front/idle_flood.{json,md}.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE
from fizbuz.lifecycle import free_ports
from serving.front import client, tokens
from serving.front.fleet import Fleet, Options

HERE = Path(__file__).resolve().parent
PARTIAL_HEADER = b"POST /predictions/fizbuz_package HTTP/1.1\r\nHost: x\r\n"  # never finished


class Flood:
    """`count` connections without a token, `slow` of them TLS with a partial
    request; a thread opens a new one for each the door drops."""

    def __init__(self, address, port, cafile, count, slow):
        self.address, self.port, self.count, self.slow = address, port, count, slow
        self.context = client.tls_context(cafile)
        self.sockets, self.reopened = [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True)

    def _open(self, index):
        sock = socket.create_connection((self.address, self.port), timeout=10)
        if index < self.slow:
            sock = self.context.wrap_socket(sock, server_hostname=self.address)
            sock.sendall(PARTIAL_HEADER)
        sock.setblocking(False)
        return sock

    @staticmethod
    def _dropped(sock):
        try:
            return sock.recv(1) == b""
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True

    def _keep(self):
        while not self._stop.wait(0.5):
            for index, sock in enumerate(self.sockets):
                if self._dropped(sock):
                    sock.close()
                    self.sockets[index] = self._open(index)
                    self.reopened += 1

    def __enter__(self):
        self.sockets = [self._open(index) for index in range(self.count)]
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        for sock in self.sockets:
            sock.close()


def holder_p99(address, port, cafile, token, clients, answers):
    with client.Load(address, port, cafile, token, clients) as load:
        load.wait_for_answers(answers, timeout=300)
    summary = load.result.summary()
    if summary["failed"] or summary["wrong"]:
        raise SystemExit(f"the token holder's requests failed: {summary}")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--answers", type=int, default=3000, help="the holder's answers per measurement")
    parser.add_argument("--clients", type=int, default=16, help="the token holder's clients")
    parser.add_argument("--connections", type=int, default=2000, help="connections without a token")
    parser.add_argument("--slow", type=int, default=50, help="of them, TLS with a never-finished request")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", default=str(HERE / "results" / "front"))
    argv = sys.argv[1:] if argv is None else argv  # recorded with the figures
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.connections + 1024)), hard))
    directory = Path(tempfile.mkdtemp(prefix="fbz-flood-"))
    fleet = Fleet(directory)
    rounds = []
    try:
        front_port, metrics_port = free_ports(2)
        state = fleet.start(Options(hosts=2, workers=2, front_port=front_port, metrics_port=metrics_port, mar=args.mar))
        address, port = state["front"]["listen"].rsplit(":", 1)
        cafile, token = state["front"]["certificate"], tokens.read(fleet.token_file)["default"]
        load_before = os.getloadavg()[0]
        holder_p99(address, int(port), cafile, token, args.clients, args.answers // 3)  # warm-up
        for number in range(args.rounds):
            idle = holder_p99(address, int(port), cafile, token, args.clients, args.answers)
            with Flood(address, int(port), cafile, args.connections, args.slow) as flood:
                flooded = holder_p99(address, int(port), cafile, token, args.clients, args.answers)
                reopened = flood.reopened
            rounds.append(
                {
                    "round": number + 1,
                    "idle_p99_ms": idle["p99_ms"],
                    "flood_p99_ms": flooded["p99_ms"],
                    "idle_p50_ms": idle["p50_ms"],
                    "flood_p50_ms": flooded["p50_ms"],
                    "ratio_p99": round(flooded["p99_ms"] / idle["p99_ms"], 2),
                    "flood_reopened": reopened,
                }
            )
            print(rounds[-1], flush=True)
        load_after = os.getloadavg()[0]
    finally:
        fleet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    median = statistics.median(r["ratio_p99"] for r in rounds)
    result = {
        "command": " ".join([".venv/bin/python -m bench.idle_flood", *argv]),
        "rounds": rounds,
        "median_ratio_p99": median,
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "clients": args.clients,
        "connections": args.connections,
        "slow": args.slow,
        "answers": args.answers,
    }
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "idle_flood.json").write_text(json.dumps(result, indent=2))
    rows = "".join(
        f"| {r['round']} | {r['idle_p99_ms']} | {r['flood_p99_ms']} | {r['ratio_p99']} | {r['flood_reopened']} |\n"
        for r in rounds
    )
    (output / "idle_flood.md").write_text(
        f"# A token holder under a flood of connections without a token "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; a shared 2-core machine)\n\n"
        f"Command: `{result['command']}`. {args.clients} answer-checking clients with a "
        f"token, {args.answers} answers per measurement; the flood: {args.connections} connections "
        f"({args.slow} of them TLS with a never-finished request), each one the door drops opened again. "
        f"Rounds interleaved (idle door, then flooded). Load average (1 min) {load_before:.2f} before, "
        f"{load_after:.2f} after.\n\n"
        f"| round | idle p99 ms | flooded p99 ms | ratio | flood connections reopened |\n|---|---|---|---|---|\n"
        f"{rows}\nMedian p99 ratio: **{median}** (goal: at most 2).\n"
    )
    print(f"median p99 ratio {median}; written to {output}/idle_flood.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
