"""Figures for the container stack (serving/containers), in one run on this box:

- image sizes (base, MMS host, front door);
- build time from a cold cache (a fresh dockerd of our own) and warm: the same
  inputs again, and a new archive (only the last layers rebuilt);
- time from `docker stack deploy` to the first right answer through the front door;
- req/s at c=64 (wrk, bench/load_generator.py) through the stack's front door
  vs the namespace fleet's (serving/front), same shape (2 MMS hosts x 1 worker),
  both up at once, measured in interleaved rounds; medians and ranges.

Writes bench/results/containers.md (and the raw rows as JSON beside it).
Takes about 8 minutes; everything it starts is stopped at the end."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from bench.load_generator import LoadError, ensure_tools, run_wrk
from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, PREDICT_PATH, ROOT
from fizbuz.lifecycle import free_port
from serving.containers.stack import Options, Stack
from serving.front import tokens
from serving.front.fleet import Fleet, Options as FleetOptions
from fizbuz import logs

HERE = Path(__file__).resolve().parent


def rate_cells(rows):
    """A table's cells for wrk runs of one kind: median req/s, range, median p99, errors."""
    rates = [row["req_per_s"] for row in rows]
    return (
        f"{statistics.median(rates):,.0f} | {min(rates):,.0f} – {max(rates):,.0f} | "
        f"{statistics.median(row['p99_ms'] for row in rows):.1f} | {sum(r['errors'] for r in rows)}"
    )


def wrk(url, connections, seconds, log_file, headers):
    try:
        result = run_wrk(url, connections, seconds, threads=2, log_file=log_file, headers=headers)
    except LoadError as error:
        raise SystemExit(str(error))
    return {
        "req_per_s": round(result.good_per_second, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "requests": result.requests,
    }


def remarked(mar, target):
    """The archive with a new modelVersion: new bytes, so a new image layer."""
    with zipfile.ZipFile(mar) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"]["modelVersion"] = time.strftime("%Y%m%d%H%M%S")
                data = json.dumps(manifest, indent=2).encode()
            copy.writestr(item, data)
    return target


def image_mb(docker, tag):
    return round(int(docker.run("image", "inspect", "--format", "{{.Size}}", tag)) / 1e6, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: 10)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--output", default=str(HERE / "results" / "containers.md"))
    args = parser.parse_args(argv)
    logs.setup("progress")
    ensure_tools()
    subprocess.run([str(ROOT / "serving/containers/setup_docker.sh")], check=True)
    folder = Path(tempfile.mkdtemp(prefix="fbz-cbench-"))
    wrk_log = folder / "wrk.log"
    stack, fleet = Stack(folder / "stack"), Fleet(folder / "fleet")
    figures, rows = {}, []
    try:
        state = stack.start(Options(stack="fbzbench", front_port=free_port(), engine="own"))
        docker = stack.docker(state)
        figures["storage_driver"] = state["storage_driver"]
        figures["timings"] = dict(state["timings"])
        base = f"fizbuz-base:bookworm-{state['id']}"
        figures["sizes_mb"] = {
            "base (debootstrap minbase)": image_mb(docker, base),
            "MMS host": image_mb(docker, state["mms_image"]),
            "front door": image_mb(docker, state["front_image"]),
        }
        started = time.monotonic()
        stack.build_mms(state, docker, base, str(MODEL_STORE / MAR_FILE_NAME))
        figures["warm_same_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        stack.build_mms(
            state,
            docker,
            base,
            str(remarked(MODEL_STORE / MAR_FILE_NAME, folder / MAR_FILE_NAME)),
            version="bench-new-archive",
        )
        figures["warm_new_archive_s"] = round(time.monotonic() - started, 1)

        fleet_state = fleet.start(FleetOptions(hosts=2, workers=1, front_port=free_port()))
        targets = {
            "stack (Swarm, containers)": (
                f"https://127.0.0.1:{state['options']['front_port']}{PREDICT_PATH}",
                [f"Authorization: Bearer {tokens.read(stack.token_file)['default']}"],
            ),
            "fleet (namespaces)": (
                f"https://{fleet_state['front']['listen']}{PREDICT_PATH}",
                [f"Authorization: Bearer {tokens.read(fleet.token_file)['default']}"],
            ),
        }
        for url, headers in targets.values():
            wrk(url, args.connections, 3, wrk_log, headers)  # warm-up
        for round_number in range(args.rounds):
            order = list(targets.items())
            if round_number % 2:
                order.reverse()  # neither always goes first
            for name, (url, headers) in order:
                row = {
                    "target": name,
                    "round": round_number,
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                    **wrk(url, args.connections, args.duration, wrk_log, headers),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        for what in (fleet.stop, stack.stop):
            try:
                what()
            except Exception as error:  # the other must still be stopped
                print(f"stopping failed: {error}")
        shutil.rmtree(folder, ignore_errors=True)
    write(figures, rows, Path(args.output), args)
    return 0


def write(figures, rows, output, args):
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps({"figures": figures, "rows": rows}, indent=2))
    timings = figures["timings"]
    lines = [
        "# Container stack figures",
        "",
        f"`bench/containers_bench.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, on this shared "
        f"2-core machine (other jobs ran; 1-minute load average in the rows). Docker Engine 20.10 (Debian), "
        f"storage driver {figures['storage_driver']}.",
        "",
        "| image | size |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {size:,.1f} MB |" for name, size in figures["sizes_mb"].items()]
    lines += [
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| debootstrap + import of the base | {timings.get('base_s', '-')} |",
        f"| MMS image, cold cache | {timings.get('build_fizbuz-mms_s', '-')} |",
        f"| front image, cold cache | {timings.get('build_fizbuz-front_s', '-')} |",
        f"| MMS image, warm cache, same inputs | {figures['warm_same_s']} |",
        f"| MMS image, warm cache, a new archive | {figures['warm_new_archive_s']} |",
        f"| `docker stack deploy` to the first right answer through the front door | "
        f"{timings.get('deploy_to_first_answer_s', '-')} |",
        "",
        f"wrk at c={args.connections}, {args.duration} s per run, {args.rounds} interleaved rounds, "
        f"both set-ups up at once (2 MMS hosts x 1 worker each, nginx front door with HTTPS and a token):",
        "",
        "| through | median req/s | range | median p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(row["target"] for row in rows):
        lines.append(f"| {name} | {rate_cells([row for row in rows if row['target'] == name])} |")
    names = list(dict.fromkeys(row["target"] for row in rows))
    if len(names) == 2:
        medians = [statistics.median(r["req_per_s"] for r in rows if r["target"] == n) for n in names]
        lines += ["", f"Ratio stack / fleet (medians): {medians[0] / medians[1]:.2f}."]
    lines += [
        "",
        "Rounds:",
        "",
        "| round | through | req/s | p50 ms | p99 ms | load avg |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['round']} | {r['target']} | {r['req_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.1f} | "
        f"{r['load_avg_1m']} |"
        for r in rows
    ]
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
