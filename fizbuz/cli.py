"""`fizbuz`: the one command of the project, a subcommand per part.

    fizbuz mms start            one MXNet Model Server on this host
    fizbuz fleet start          the nginx front door over a namespace fleet
    fizbuz bench v2 --rounds 6  a benchmark
    fizbuz PART -h              the part's own help

Each part is the room's own command line (its `main`), named here by module
path and imported only when chosen: `fizbuz --help` stays instant (no torch,
no MXNet), and this table, which sits in the bottom room, imports no room above
it (the layering in pyproject's [tool.importlinter] holds). The card's scripts
(start_mms.sh, scale_workers.sh, build_mar.sh) and the room scripts (fleet.sh,
containers.sh, start_redis.sh) stay, as the shell's way in to the same code.

Errors: a FizbuzError from any part prints as one line (`fizbuz PART: error`)
with its exit code; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import subprocess
import sys
from dataclasses import dataclass

from fizbuz.contract import ROOT
from fizbuz.errors import FizbuzError


@dataclass(frozen=True)
class Part:
    module: str
    help: str
    # How the part's main reads its arguments: "args" main(argv) without the
    # program name, "full" main(argv) with it, "sys" main() from sys.argv.
    style: str = "args"
    # The room's script, run instead for these commands: it prepares what the
    # command needs (a venv, apt packages, the .mar) and then runs the same main.
    script: str = ""
    script_commands: frozenset[str] = frozenset()


PARTS: dict[str, Part] = {
    # serving
    "mms": Part(
        "serving.mms.cli",
        "one MMS on this host: start | stop | status | scale (start_mms.sh)",
        script="start_mms.sh",
        script_commands=frozenset({"start"}),
    ),
    "fleet": Part(
        "serving.front.cli",
        "the nginx front door over a namespace fleet: start | stop | status | env | "
        "token | drain | rollout ... (fleet.sh)",
        script="serving/front/fleet.sh",
        script_commands=frozenset({"start"}),
    ),
    "stack": Part(
        "serving.containers.cli",
        "the Docker Swarm stack: start | stop | status | env (containers.sh)",
        script="serving/containers/containers.sh",
        script_commands=frozenset({"start"}),
    ),
    "redis": Part("serving.redis.cli", "redis-server with the FizBuzNet module: start | stop | status | ..."),
    "flask": Part("serving.flask.cli", "the Flask + gunicorn server: start | stop | status"),
    # the model
    "train": Part("fizbuz.train", "train FizBuzNet (seeded) to assets/fizbuz_model.pth"),
    "export": Part("export_onnx", "trace to ONNX and check parity with PyTorch on every input"),
    "torchscript": Part("fizbuz.torchscript", "save the TorchScript model for the C++ runner and Redis"),
    "check-archive": Part("fizbuz.archive", "check a built .mar holds exactly what it should", "full"),
    "contract": Part("fizbuz.contract", "print contract values by name (for scripts)", "full"),
    "netron": Part("inspection.netron_server", "view the ONNX graph in netron: start | stop | status"),
    "render": Part("inspection.render_netron", "render the netron view to a PNG with headless Chromium"),
    # load and faults
    "load": Part("loadtest.loadgen", "answer-checking closed-loop load against any URL (card or v2)"),
    "openloop": Part("loadtest.openloop", "answer-checking open-loop load on a fixed schedule (constant, Poisson)"),
    "faults": Part("loadtest.faults", "load with workers killed: nothing may fail or be wrong"),
    "soak": Part("loadtest.soak", "a long answer-checking load with memory and worker checks"),
}

BENCHES: dict[str, Part] = {
    "servers": Part("bench.run_bench", "req/s of every serving path side by side (bench/results/results.md)", "sys"),
    "handler": Part("bench.bench_handler", "the handler's own cost per batch size", "sys"),
    "runners": Part("bench.bench_runners", "the model runners (MXNet, ONNX, TorchScript, C++) side by side"),
    "adaptive": Part("bench.adaptive", "the front door's adaptive batching vs always batched"),
    "front": Part("bench.front_cost", "the front door's cost: through nginx vs straight to MMS"),
    "front-soak": Part("bench.front_soak", "a long load through the front door"),
    "idle-flood": Part("bench.idle_flood", "a token holder's p99 while 2,000 tokenless connections flood the door"),
    "containers": Part("bench.containers_bench", "the Swarm stack vs the namespace fleet"),
    "multinode": Part("bench.multinode_bench", "the multi-node Swarm: faults under load, the stack vs the fleet"),
    "v2": Part("bench.v2", "the Open Inference Protocol paths vs the card's path"),
    "overload": Part("bench.overload", "goodput and latency from 0.25x to 4x capacity, admission control on / off"),
    "front-cpu": Part("bench.front_door_cpu", "nginx's CPU per request through TLS, before / after each change"),
    "metrics-cost": Part("bench.metrics_cost", "what MMS's metrics cost: on / log lines / off"),
    "mms-path": Part("bench.mms_path", "MMS's path: as shipped vs worker patch vs tuned frontend; cold vs warm starts"),
    "front-metrics-cost": Part("bench.front_metrics_cost", "what the front door's metrics cost: on / off"),
    "metrics-picture": Part("bench.metrics_picture", "draw docs/metrics_under_kill.png from a real Prometheus"),
    "redis": Part("serving.redis.bench", "the Redis module's paths side by side"),
}


def listing(title: str, parts: dict[str, Part]) -> str:
    width = max(map(len, parts))
    return title + "\n" + "\n".join(f"  {name:<{width}}  {part.help}" for name, part in parts.items())


def build_parser() -> argparse.ArgumentParser:
    epilog = "\n\n".join(
        [
            listing("parts:", PARTS),
            listing("benchmarks (fizbuz bench NAME):", BENCHES),
            "other:\n  settings  every setting: its FIZBUZ_ name, old name, default and value here\n"
            "  test      run the tests (./run_tests.sh with the same arguments)",
        ]
    )
    parser = argparse.ArgumentParser(
        prog="fizbuz",
        description=__doc__.split("\n\n")[0],
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "part", choices=[*PARTS, "bench", "settings", "test"], metavar="PART", help="what to run (listed below)"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the part's own arguments (fizbuz PART -h)")
    return parser


def run_part(name: str, part: Part, args: list[str]) -> int:
    prog = f"fizbuz {name}"
    if part.script and args and args[0] in part.script_commands and not {"-h", "--help"} & set(args):
        return subprocess.call([str(ROOT / part.script), *args])
    main = importlib.import_module(part.module).main
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        if part.style == "sys" or not inspect.signature(main).parameters:
            result = main()
        elif part.style == "full":
            result = main([prog, *args])
        else:
            result = main(args)
    except FizbuzError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        sys.argv = saved
    return result if isinstance(result, int) else 0


def run_bench(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: fizbuz bench NAME [ARGS ...]\n\n"
            + listing("benchmarks:", BENCHES)
            + "\n\nEach writes its figures to one results file under bench/results/ (fizbuz bench NAME -h)."
        )
        return 0 if args else 2
    name = args[0]
    if name not in BENCHES:
        print(f"fizbuz bench: no benchmark '{name}' (choose from: {', '.join(BENCHES)})", file=sys.stderr)
        return 2
    return run_part(f"bench {name}", BENCHES[name], args[1:])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.part == "bench":
        return run_bench(args.args)
    if args.part == "settings":
        from fizbuz import settings

        return settings.main(args.args)
    if args.part == "test":
        return subprocess.call([str(ROOT / "run_tests.sh"), *args.args])
    return run_part(args.part, PARTS[args.part], args.args)


if __name__ == "__main__":
    sys.exit(main())
