#!/usr/bin/env python3
"""nginx's CPU per request at the front door, before and after making it
cheaper, in one run: wrk at c=64 through HTTPS with the token, on one fleet,
the front door's settings switched between rounds by a graceful reload.

First a profile: `perf record` on the nginx workers during a run of the
last variant (the fleet's settings now; the top symbols go to the results), then interleaved rounds
of each variant; nginx's CPU is read from /proc (user + system of its
workers) around each wrk run and divided by the requests wrk counted.

Variants, each on top of the one before: "before" (the settings this started
from: no admission caps, nginx workers = cores, 64k log buffers), the
admission and retry-budget caps (max_conns in a shared zone), one nginx worker,
the retry budget's share of successes (the Lua module, retry_budget.lua).
Writes bench/results/overload/front_cpu.{json,md}.

With --parts: where the shipped door's CPU goes. The fleet's door as shipped,
then without one part at a time (the retry budget's Lua, the metrics log, the
caps and limits), and beside it, on the same host, two bare nginx proxies
written here: TLS with keep-alive to the host and nothing else (the floor of
any nginx front door through TLS), and the same without TLS. Writes
bench/results/overload/front_cpu_parts.{json,md}.

Examples:
  python -m bench.front_door_cpu                 # 3 rounds x 4 variants x 10 s
  python -m bench.front_door_cpu --rounds 1 --seconds 5
  python -m bench.front_door_cpu --rounds 6 --variants 3 4   # one step alone, more rounds
  python -m bench.front_door_cpu --parts --rounds 3           # the shipped door, part by part
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load_generator import LoadError, ensure_tools, run_wrk
from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, PREDICT_PATH
from fizbuz.lifecycle import free_ports
from serving.front import tokens
from serving.front.fleet import Fleet, Options
from serving.front.nginx import FrontDoor

HERE = Path(__file__).resolve().parent
BEFORE = {"workers": "auto", "log_buffer": "64k", "admission": 0, "retry_budget": 0, "retry_share": 0.0}
CAPS = {**BEFORE, "admission": 64, "retry_budget": 32}
VARIANTS = {  # each on top of the one before it
    "before (no caps, workers auto = 2, 64k log buffers)": BEFORE,
    "+ admission and retry-budget caps": CAPS,
    "+ 1 nginx worker": {**CAPS, "workers": "1"},
    # the Lua module: a success deposited per request (log phase); the fleet's default now
    "+ retry budget, share of successes (after)": {**CAPS, "workers": "1", "retry_share": 0.1, "retry_floor": 3.0},
}


# --parts: changes on top of the door as the fleet ships it ("tls", "plain": a bare proxy of that kind)
PARTS = {
    "before (as issue 23 found it: no caps, 2 workers, no Lua)": BEFORE,
    "shipped": {},
    "- retry budget's Lua (share 0)": {"retry_share": 0.0},
    "- metrics log": {"metrics_log": False},
    "- admission and retry caps": {"admission": 0, "retry_budget": 0},
    "bare TLS proxy (keep-alive, no log)": "tls",
    "bare plain-HTTP proxy (keep-alive, no log)": "plain",
}

BARE = """worker_processes 1;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/temp;
    proxy_temp_path {prefix}/temp;
    upstream host {{ server {host}; keepalive 64; keepalive_requests 100000; }}
    server {{
        listen {listen}{ssl};
        {tls}
        keepalive_requests 100000;
        location = {path} {{
            proxy_pass http://host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def bare_proxy(folder, kind, host, certificate, key):
    """A bare nginx proxy (kind "tls" or "plain") to `host`, started: (door, url)."""
    door = FrontDoor(folder)
    door.prefix.mkdir(parents=True, exist_ok=True)
    (door.prefix / "temp").mkdir(exist_ok=True)
    door.logs.mkdir(exist_ok=True)
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    tls = f"ssl_certificate {certificate}; ssl_certificate_key {key}; ssl_session_cache shared:bare:1m;"
    door.conf.write_text(
        BARE.format(
            prefix=door.prefix,
            host=host,
            listen=listen,
            ssl=" ssl" if kind == "tls" else "",
            tls=tls if kind == "tls" else "",
            path=PREDICT_PATH,
        )
    )
    door.start(listen)
    return door, f"{'https' if kind == 'tls' else 'http'}://{listen}{PREDICT_PATH}"


def profile(fleet, url, headers, seconds, log_file, output):
    """perf's top symbols in the nginx workers while wrk runs; '' when perf cannot run."""
    pids = ",".join(str(w.pid) for w in fleet.door.workers())
    data = output / "perf.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-F", "999", "-g", "-o", str(data), "-p", pids],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_wrk(url, 64, seconds, threads=2, log_file=log_file, headers=headers)
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    lines = []
    for sort, limit in (("dso", "1"), ("dso,symbol", "1")):
        report = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(data),
                "--no-children",
                "--sort",
                sort,
                "-g",
                "none",
                "--stdio",
                "--percent-limit",
                limit,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines += [
            line.rstrip()
            for line in report.stdout.splitlines()
            if line.strip() and not line.startswith("#") and "%" in line
        ] + [""]
    data.unlink(missing_ok=True)
    return "\n".join(lines).strip()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.front_door_cpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="seconds per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default: %(default)s)")
    parser.add_argument(
        "--variants",
        type=int,
        nargs="+",
        choices=range(1, max(len(VARIANTS), len(PARTS)) + 1),
        metavar="N",
        help="which variants, by number in the table (default: all)",
    )
    parser.add_argument(
        "--parts", action="store_true", help="where the shipped door's CPU goes, against bare proxies (see above)"
    )
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", default=str(HERE / "results" / "overload"))
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--seconds, --rounds and --connections must be at least 1")
    variants = PARTS if args.parts else VARIANTS
    numbers = args.variants or range(1, len(variants) + 1)
    chosen = {name: changes for number, (name, changes) in enumerate(variants.items(), 1) if number in numbers}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the fleet on the way out
    ensure_tools()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="fbz-cpu-"))
    log_file = directory / "wrk.log"
    fleet = Fleet(directory)
    rows, top, bare = [], "", {}
    try:
        front_port, metrics_port = free_ports(2)
        state = fleet.start(
            Options(
                hosts=1,
                workers=2,
                front_port=front_port,
                metrics_port=metrics_port,
                mar=args.mar,
                nginx_workers=BEFORE["workers"],
            )
        )
        url = f"https://{state['front']['listen']}{PREDICT_PATH}"
        headers = [f"Authorization: Bearer {tokens.read(fleet.token_file)['default']}"]
        run_wrk(url, args.connections, 5, threads=2, log_file=log_file, headers=headers)  # warm-up
        shipped = dict(state["front"])
        if args.parts:
            host = fleet.hosts(state)[0].upstream
            for name, kind in chosen.items():
                if isinstance(kind, str):
                    bare[name] = bare_proxy(
                        directory / kind, kind, host, state["front"]["certificate"], state["front"]["key"]
                    )
        else:
            fleet.update_front(**list(VARIANTS.values())[-1])
        top = profile(fleet, url, headers, args.seconds, log_file, output)
        for round_ in range(args.rounds):
            for name, changes in chosen.items():
                door, target = bare.get(name, (fleet.door, url))
                if name not in bare:
                    fleet.update_front(**({**shipped, **changes} if args.parts else changes))
                before = door.workers_cpu_seconds()
                result = run_wrk(target, args.connections, args.seconds, threads=2, log_file=log_file, headers=headers)
                used = door.workers_cpu_seconds() - before
                row = {
                    "variant": name,
                    "round": round_,
                    "load_avg_1m": os.getloadavg()[0],
                    "requests": result.requests,
                    "req_per_s": round(result.good_per_second, 1),
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "errors": result.errors,
                    "nginx_cpu_us_per_request": round(used / max(1, result.requests) * 1e6, 1),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    except LoadError as error:
        raise SystemExit(f"bench.front_door_cpu: {error}")
    finally:
        for door, _ in bare.values():
            door.stop()
        fleet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    write(rows, top, output, args, chosen)
    return 0


def round_ratio(rows, name, first):
    """The median over rounds of this variant's CPU per request over the first
    variant's in the same round: rounds of a shared box differ more than variants."""
    cost = {(r["variant"], r["round"]): r["nginx_cpu_us_per_request"] for r in rows}
    rounds = sorted({r["round"] for r in rows})
    ratios = sorted(cost[name, n] / cost[first, n] for n in rounds if (name, n) in cost and cost.get((first, n), 0) > 0)
    return f"{ratios[len(ratios) // 2]:.2f}x" if ratios else "–"


def write(rows, top, output, args, chosen):
    stem = "front_cpu_parts" if args.parts else "front_cpu"
    (output / f"{stem}.json").write_text(json.dumps({"rows": rows, "perf_top": top}, indent=2))
    loads = [r["load_avg_1m"] for r in rows]
    lines = [
        f"# The front door's CPU per request ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Command: `python -m bench.front_door_cpu {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"wrk, c={args.connections}, HTTPS with the token, {args.seconds} s per run, {args.rounds} interleaved "
        "rounds; one host with 2 MMS workers (batch 16) in a namespace; nginx's CPU from /proc around each "
        f"run. Same 2 cores for wrk, nginx and MMS, shared with other jobs (1-minute load average "
        f"{min(loads):.1f}..{max(loads):.1f}).",
        "",
        "| variant | nginx CPU µs/request (median) | vs the first (median of rounds) | runs | req/s (median) "
        "| p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = next(iter(chosen))
    for name in chosen:
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["nginx_cpu_us_per_request"])
        middle = mine[len(mine) // 2]
        speeds = sorted(r["req_per_s"] for r in mine)
        lines.append(
            f"| {name} | {middle['nginx_cpu_us_per_request']} | {round_ratio(rows, name, first)} | "
            f"{', '.join(str(r['nginx_cpu_us_per_request']) for r in mine)} | "
            f"{speeds[len(speeds) // 2]:,.0f} | "
            f"{middle['p50_ms']} | {middle['p99_ms']} | {sum(r['errors'] for r in mine)} |"
        )
    lines += [
        "",
        f"perf, the nginx workers during one run of {'the door as shipped' if args.parts else list(VARIANTS)[-1]} "
        "(by binary, then symbols over 1%):",
        "",
        "```",
        top or "(perf could not run here)",
        "```",
    ]
    (output / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
