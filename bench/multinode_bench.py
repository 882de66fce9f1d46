"""Figures for the multi-node Swarm (serving/containers/cluster.py), in one run
on this box:

- the fault table: each fault of serving/containers/faults.py under 32
  answer-checking clients through the front door on the edge node (the card's
  path or v2 REST): sent, failed, wrong, max latency, time from the fault to
  the desired task count on the other nodes, time until the node is back;
- req/s at c=64 (wrk) through the cluster's front door vs the namespace
  fleet's (serving/front), same shape (2 MMS hosts x 1 worker), both up at
  once, in interleaved rounds, in three phases: as deployed (1 CPU per MMS
  task, the tasks on the model nodes); without the CPU limit (`docker service
  update --limit-cpu 0`); and with the tasks moved to the edge node beside
  the front door (the overlay's hop between nodes gone): the limit and the
  overlay measured apart.

Writes bench/results/multinode/multinode.md (and the raw rows as JSON beside
it). Takes about 20 minutes; everything it starts is stopped at the end."""

import argparse
import dataclasses
import json
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.containers_bench import rate_cells, wrk
from bench.load_generator import ensure_tools
from fizbuz import logs
from fizbuz.contract import PREDICT_PATH, ROOT
from fizbuz.lifecycle import free_port
from serving.containers import faults
from serving.containers.cluster import FRONT_PORT, Cluster, ClusterOptions
from serving.front import client, tokens
from serving.front.fleet import Fleet, Options as FleetOptions

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def fault_rows(cluster, cafile, token):
    nodes = cluster.nodes()
    edge, model_nodes = nodes[0], nodes[1:]
    plan = [
        ("v2", lambda: faults.drain(cluster, model_nodes[0])),
        ("card", lambda: faults.rolling_update(cluster)),
        ("card", lambda: faults.cut_network(cluster, model_nodes[1])),
        ("v2", lambda: faults.kill_engine(cluster, model_nodes[1])),
    ]
    rows = []
    for protocol, fault in plan:
        cluster.spread(model_nodes)
        with client.Load(edge.address, FRONT_PORT, cafile, token, 32, protocol=protocol) as load:
            load.wait_for_answers(300)
            result = fault()
            load.wait_for_answers(load.result.answered + 300)
        summary = load.result.summary()
        row = {
            **dataclasses.asdict(result),
            "protocol": protocol,
            "load_avg_1m": round(os.getloadavg()[0], 1),
            **{key: summary[key] for key in ("sent", "failed", "wrong", "p99_ms", "max_ms")},
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


# The phases of the req/s table, in order: (label, `docker service update`
# flags that take the MMS service from the previous phase to this one).
MODEL_NODES = "node.labels.fizbuz.role==model"
EDGE_NODE = "node.labels.fizbuz.role==edge"
PHASES = (
    ("as deployed: 1 CPU per MMS task, tasks on the model nodes", ()),
    ("no CPU limit, tasks on the model nodes", ("--limit-cpu", "0")),
    (
        "no CPU limit, tasks on the edge node (no VXLAN hop)",
        ("--constraint-rm", MODEL_NODES, "--constraint-add", EDGE_NODE),
    ),
)
CLUSTER, FLEET = "cluster (3-node Swarm, overlay)", "fleet (namespaces)"


def speed_rows(cluster, fleet_state, fleet, rounds, duration, connections, wrk_log):
    """wrk through both front doors, interleaved, in each phase: the CPU limit
    taken away, then the overlay's hop between nodes (the tasks moved next to
    the front door), each measured apart against the same fleet."""
    edge = cluster.nodes()[0]
    targets = {
        CLUSTER: (
            f"https://{edge.address}:{FRONT_PORT}{PREDICT_PATH}",
            [f"Authorization: Bearer {tokens.read(cluster.builder.token_file)['default']}"],
        ),
        FLEET: (
            f"https://{fleet_state['front']['listen']}{PREDICT_PATH}",
            [f"Authorization: Bearer {tokens.read(fleet.token_file)['default']}"],
        ),
    }
    rows = []
    for phase, changes in PHASES:
        if changes:
            log.info("next phase: %s (docker service update %s)", phase, " ".join(changes))
            cluster.rolling_restart(*changes)
        log.info("MMS tasks by node: %s", cluster.running_tasks())
        for url, headers in targets.values():
            wrk(url, connections, 3, wrk_log, headers)  # warm-up
        for round_number in range(rounds):
            order = list(targets.items())
            if round_number % 2:
                order.reverse()  # neither always goes first
            for name, (url, headers) in order:
                row = {
                    "target": name,
                    "phase": phase,
                    "round": round_number,
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                    **wrk(url, connections, duration, wrk_log, headers),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per phase (default: 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default: 10)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-faults", action="store_true", help="only the req/s table")
    parser.add_argument("--output", default=str(HERE / "results" / "multinode" / "multinode.md"))
    args = parser.parse_args(argv)
    logs.setup("progress")
    ensure_tools()
    subprocess.run([str(ROOT / "serving/containers/setup_docker.sh")], check=True)
    folder = Path(tempfile.mkdtemp(prefix="fbzm-bench-"))
    folder.chmod(0o711)  # the fleet's MMS runs as its own user and must enter it (not list it)
    cluster, fleet = Cluster(folder / "cluster"), Fleet(folder / "fleet")
    figures, fault_table, speed = {}, [], []
    try:
        state = cluster.start(ClusterOptions(nodes=3, managers=3, stack="fbzmbench"))
        figures["timings"] = dict(cluster.require()["timings"], **cluster.builder.require()["timings"])
        cafile = cluster.builder.front_dir / "cert.pem"
        if not args.skip_faults:
            fault_table = fault_rows(cluster, cafile, tokens.read(cluster.builder.token_file)["default"])
        cluster.spread(cluster.nodes(state)[1:])
        fleet_state = fleet.start(FleetOptions(hosts=2, workers=1, front_port=free_port()))
        speed = speed_rows(
            cluster, fleet_state, fleet, args.rounds, args.duration, args.connections, folder / "wrk.log"
        )
    finally:
        for what in (fleet.stop, cluster.stop):
            try:
                what()
            except Exception as error:  # the other must still be stopped
                print(f"stopping failed: {error}")
        shutil.rmtree(folder, ignore_errors=True)
    write(figures, fault_table, speed, Path(args.output), args)
    return 0


def write(figures, fault_table, speed, output, args):
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(
        json.dumps({"figures": figures, "faults": fault_table, "speed": speed}, indent=2)
    )
    timings = figures.get("timings", {})
    lines = [
        "# Multi-node Swarm figures",
        "",
        f"`.venv/bin/python -m bench.multinode_bench`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"on this shared 2-core machine (other jobs ran; 1-minute load average in the rows). Three Docker "
        f"Engines 20.10 (Debian), each in its own network namespace, all three managers; node 0 the edge "
        f"(front door), nodes 1 and 2 the model nodes (one MMS task of 1 worker each).",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| bridge, registry, 3 engines, swarm init + joins, labels | {timings.get('nodes_s', '-')} |",
        f"| images (base, MMS, front) built on the host, pushed to the registry | {timings.get('build_s', '-')} |",
        f"| `docker stack deploy` to the first right answer through the front door (nodes pull the images) | "
        f"{timings.get('deploy_to_first_answer_s', '-')} |",
        "",
    ]
    if fault_table:
        lines += [
            "Faults under 32 answer-checking clients through the front door (each: the fault, Swarm's view of "
            "it, the tasks back to the desired count on the other nodes, the node healed):",
            "",
            "| fault | node | clients | sent | failed | wrong | p99 ms | max ms | to desired count, s | "
            "node back, s | load avg |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['fault']} | {r['node']} | {r['protocol']} | {r['sent']:,} | {r['failed']} | {r['wrong']} | "
            f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['recovered_s']:.1f} | {r['healed_s']:.1f} | "
            f"{r['load_avg_1m']} |"
            for r in fault_table
        ]
        lines += [""]
    if speed:
        lines += speed_lines(speed, args)
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def speed_lines(speed, args):
    """The stack vs fleet table: per phase, medians and the cluster / fleet
    ratio of each round (the two measured one after the other), then every round."""
    lines = [
        f"wrk at c={args.connections}, {args.duration} s per run, {args.rounds} interleaved rounds per "
        f"phase, the cluster and the fleet up at once (2 MMS hosts x 1 worker each, nginx front door with "
        f"HTTPS and a token; the cluster's front door keeps its connections to the tasks, "
        f"serving/containers/front_tasks.sh):",
        "",
        "| phase | through | median req/s | range | median p99 ms | errors | cluster / fleet (median of rounds) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for phase in dict.fromkeys(row["phase"] for row in speed):
        mine = [row for row in speed if row["phase"] == phase]
        by_round = {}
        for row in mine:
            by_round.setdefault(row["round"], {})[row["target"]] = row["req_per_s"]
        ratios = [r[CLUSTER] / r[FLEET] for r in by_round.values() if r.get(FLEET) and CLUSTER in r]
        for target in (CLUSTER, FLEET):
            rows = [row for row in mine if row["target"] == target]
            if not rows:
                continue
            ratio = f"{statistics.median(ratios):.2f}" if ratios and target == CLUSTER else ""
            lines.append(f"| {phase} | {target} | {rate_cells(rows)} | {ratio} |")
    lines += [
        "",
        "Rounds:",
        "",
        "| phase | round | through | req/s | p50 ms | p99 ms | load avg |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['phase']} | {r['round']} | {r['target']} | {r['req_per_s']:,.0f} | {r['p50_ms']:.2f} | "
        f"{r['p99_ms']:.1f} | {r['load_avg_1m']} |"
        for r in speed
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
