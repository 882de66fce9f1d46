#!/usr/bin/env python3
"""FizBuzNet in containers: an MMS host image and a front door image, run as a
Docker Swarm stack (N MMS replicas behind the front door).

  start    install nothing itself (containers.sh does the apt part); start our
           own dockerd when none runs, create a one-node Swarm when the engine
           has none, build the base (debootstrap), the MMS and front images,
           deploy the stack, wait until the front door answers a prediction.
           --nodes N (N >= 2): a multi-node Swarm on this machine instead: N
           engines, each in its own network namespace, a registry, the MMS
           tasks on the model nodes, the front door on the edge node
           (cluster.py); stop/status/env then act on it
  stop     remove all of it: the stack, the images it built, the Swarm it
           created, its dockerd, bridges and iptables chains that dockerd left
  status   engine, services, tasks, the front door's /ready
  env      export lines for FIZBUZ_URL, FIZBUZ_GRPC_URL (host:port for gRPC
           clients), FIZBUZ_TOKEN, FIZBUZ_CACERT:
           eval "$(serving/containers/containers.sh env)"
  update   roll a new archive out as a new MMS image tag (start-first,
           health-gated; Swarm rolls back when new tasks fail their health check)
"""

import argparse
import os
import sys
from pathlib import Path

from fizbuz.lifecycle import LifecycleError
from serving.containers.cluster import STATE_FILE as CLUSTER_STATE, Cluster, ClusterOptions
from serving.containers.stack import Options, Stack
from fizbuz import logs, settings
from fizbuz.errors import FizbuzError


def port(text):
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="containers.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings.add_flag(parser, "containers_dir", "--dir")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="build and deploy the stack")
    settings.add_flag(start, "replicas", "--replicas")
    settings.add_flag(start, "stack_workers", "--workers")
    settings.add_flag(start, "front_port", "--front-port", type=port)
    settings.add_flag(
        start,
        "base",
        "--base",
        what="base image: 'local' builds Debian 12 with debootstrap (no "
        "Docker Hub needed); or e.g. debian:bookworm-slim",
    )
    settings.add_flag(start, "stack", "--stack")
    start.add_argument("--mar", default=Options.mar, help="the model archive to ship (model_store/...)")
    settings.add_flag(start, "mms_cpus", "--cpus")
    settings.add_flag(start, "mms_memory", "--memory")
    settings.add_flag(start, "admission", "--admission")
    settings.add_flag(start, "nodes", "--nodes")
    settings.add_flag(start, "managers", "--managers")
    commands.add_parser("stop", help="remove everything start made")
    commands.add_parser("status", help="engine, services, tasks, /ready")
    commands.add_parser(
        "env", help="export lines for the front door: FIZBUZ_URL, FIZBUZ_GRPC_URL, FIZBUZ_TOKEN, FIZBUZ_CACERT"
    )
    update = commands.add_parser("update", help="roll a new archive out as a new image tag")
    update.add_argument("mar", help="the new .mar")
    update.add_argument("--version", help="the image tag (default: from the content)")
    return parser


CLUSTER_HINT = """
Use it:
  eval "$(serving/containers/containers.sh env)"
Nodes and tasks per node: serving/containers/containers.sh status
Stop:  serving/containers/containers.sh stop"""
STACK_HINT = """
Use it:
  eval "$(serving/containers/containers.sh env)"
  curl --cacert "$FIZBUZ_CACERT" -H "Authorization: Bearer $FIZBUZ_TOKEN" \
       -H 'Content-Type: application/json' -d '{"input.1": 14}' "$FIZBUZ_URL/predictions/fizbuz_package"
Stop:  serving/containers/containers.sh stop"""


def main(argv=None):
    logs.setup("progress")
    try:
        args = build_parser().parse_args(argv)
    except FizbuzError as error:
        print(f"containers.sh: {error}", file=sys.stderr)
        return error.exit_code
    multinode = (Path(args.dir) / CLUSTER_STATE).exists() or (args.command == "start" and args.nodes > 1)
    stack = Cluster(args.dir) if multinode else Stack(args.dir)
    try:
        if args.command == "start":
            if args.replicas < 1 or args.workers < 1:
                raise LifecycleError("--replicas and --workers must be at least 1")
            if not os.path.isfile(args.mar):
                raise LifecycleError(f"{args.mar} does not exist: run ./build_mar.sh")
            common = dict(
                replicas=args.replicas,
                mms_workers=args.workers,
                base=args.base,
                stack=args.stack,
                mar=os.path.abspath(args.mar),
                mms_cpus=args.cpus,
                mms_memory=args.memory,
                admission=args.admission,
            )
            if multinode:
                stack.start(ClusterOptions(nodes=args.nodes, managers=args.managers, **common))
            else:
                stack.start(Options(front_port=args.front_port, **common))
            print(CLUSTER_HINT if multinode else STACK_HINT)
        elif args.command == "stop":
            stack.stop()
        elif args.command == "status":
            print(stack.status())
        elif args.command == "env":
            print("\n".join(stack.env_lines()))
        elif args.command == "update" and multinode:
            raise LifecycleError("update is for the one-node stack; on the cluster: docker service update")
        elif args.command == "update":
            if not os.path.isfile(args.mar):
                raise LifecycleError(f"{args.mar} does not exist")
            result = stack.update(os.path.abspath(args.mar), args.version)
            if result != "completed":
                print(
                    f"containers.sh: the update was not applied (Swarm: {result}); the previous image serves",
                    file=sys.stderr,
                )
                return 1
        return 0
    except (FizbuzError, ValueError) as error:
        print(f"containers.sh: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main())
