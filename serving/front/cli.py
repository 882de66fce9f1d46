"""fleet.sh's commands: start|stop|status|env|reload|token|drain|undrain|rollout|rollback."""

import argparse
import logging
import os
import sys
from pathlib import Path

from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, PREDICT_PATH, RUN_DIR, SMOKE_INPUT, request_body
from fizbuz.lifecycle import LifecycleError
from serving.front import tokens
from serving.front.fleet import Fleet, FleetError, Options
from serving.front.nginx import NginxError
from serving.front.network import NetworkError
from serving.front.rollout import RolloutError, rollback, rollout

ERRORS = (FleetError, LifecycleError, NginxError, NetworkError, RolloutError, tokens.TokenError)


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def build_parser():
    parser = argparse.ArgumentParser(prog="fleet.sh", description=__doc__)
    parser.add_argument("--dir", default=os.environ.get("FLEET_DIR", str(RUN_DIR / "fleet")),
                        help="the fleet's folder: state, logs, tokens, certificate (env FLEET_DIR; default run/fleet)")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="start the hosts and the front door (or restart what died)")
    start.add_argument("-n", "--hosts", type=int, default=env_int("HOSTS", 2), help="model hosts (env HOSTS, 2)")
    start.add_argument("--workers", type=int, default=env_int("WORKERS", 2), help="MMS workers per host (env WORKERS, 2)")
    start.add_argument("--port", type=int, default=env_int("FRONT_PORT", 8443), help="front door HTTPS port (env FRONT_PORT, 8443)")
    start.add_argument("--listen-address", default=os.environ.get("FRONT_ADDRESS", "127.0.0.1"))
    start.add_argument("--loopback", action="store_true", help="127.x addresses instead of namespaces, even as root")
    start.add_argument("--external-hosts", metavar="ADDR:PORT,...",
                       help="real hosts already running start_mms.sh: start only the front door over them")
    start.add_argument("--mar", default=os.environ.get("MAR", str(MODEL_STORE / MAR_FILE_NAME)))
    start.add_argument("--cert", default=os.environ.get("TLS_CERT"))
    start.add_argument("--key", default=os.environ.get("TLS_KEY"))
    start.add_argument("--rate", type=int, default=env_int("RATE", Options.rate), help="requests/s per token")
    start.add_argument("--burst", type=int, default=env_int("BURST", Options.burst))
    start.add_argument("--body-cap", default=os.environ.get("BODY_CAP", Options.body_cap))
    start.add_argument("--nginx-workers", default=os.environ.get("NGINX_WORKERS"),
                       help="nginx worker processes (env NGINX_WORKERS; default 1: cheapest beside MMS on a small box; "
                            "auto: one per core, for a front door on a machine of its own)")
    start.add_argument("--metrics-port", type=int, default=env_int("FRONT_METRICS_PORT", Options.metrics_port),
                       help="the front door's Prometheus metrics on 127.0.0.1:PORT/metrics "
                            "(env FRONT_METRICS_PORT, 9113; 0: none)")
    start.add_argument("--read-timeout", type=float, default=float(os.environ.get("READ_TIMEOUT", Options.read_timeout)))
    start.add_argument("--single-workers", type=int, default=env_int("SINGLE_WORKERS", Options.single_workers),
                       help="workers of each host's batch-1 registration, for lone requests "
                            f"(env SINGLE_WORKERS, {Options.single_workers})")
    start.add_argument("--adaptive-threshold", type=int,
                       default=env_int("ADAPTIVE_THRESHOLD", Options.adaptive_threshold),
                       help="requests arriving while at most this many client connections are open go to batch 1 "
                            f"(env ADAPTIVE_THRESHOLD, {Options.adaptive_threshold}, measured by bench/adaptive.py)")
    start.add_argument("--admission", type=int, default=env_int("ADMISSION", Options.admission),
                       help="requests in flight per host entry before the front door answers 503 + Retry-After "
                            f"(env ADMISSION, {Options.admission}; 0: no admission control); docs/overload.md")
    start.add_argument("--retry-budget", type=int, default=env_int("RETRY_BUDGET", Options.retry_budget),
                       help=f"retries in flight per host entry (env RETRY_BUDGET, {Options.retry_budget}; 0: unbounded)")
    start.add_argument("--batch-size", type=int, default=env_int("BATCH_SIZE", Options.batch_size),
                       help=f"each host's largest batch (env BATCH_SIZE, {Options.batch_size})")
    start.add_argument("--batched-only", action="store_true", default=os.environ.get("ADAPTIVE", "1") == "0",
                       help="adaptive batching off: every request to the batched registration, no batch-1 "
                            "workers (env ADAPTIVE=0)")

    for name, text in (("stop", "stop and remove everything of the fleet"), ("status", "hosts, workers, front door"),
                       ("env", "export lines: FIZBUZ_URL, FIZBUZ_GRPC_URL, FIZBUZ_TOKEN, FIZBUZ_CACERT, FIZBUZ_METRICS_URL"),
                       ("reload", "re-read the tokens file and settings (graceful)"),
                       ("rollback", "put every host back on its previous .mar, one at a time")):
        commands.add_parser(name, help=text)

    limits = commands.add_parser("limits", help="change the rate limit / body cap and reload")
    limits.add_argument("--rate", type=int)
    limits.add_argument("--burst", type=int)
    limits.add_argument("--body-cap")
    limits.add_argument("--routing", choices=["adaptive", "batched", "single"],
                        help="adaptive (default), batched (off) or single (batch 1 only; needs batch-1 workers)")
    limits.add_argument("--adaptive-threshold", type=int)
    limits.add_argument("--admission", type=int, help="requests in flight per host entry; 0: off")
    limits.add_argument("--retry-budget", type=int, help="retries in flight per host entry; 0: unbounded")

    token = commands.add_parser("token", help="add, revoke or list bearer tokens (reloads the front door)")
    token.add_argument("action", choices=["add", "revoke", "list"])
    token.add_argument("name", nargs="?")
    token.add_argument("--token", help="the token's value (default: a new random one)")

    for name in ("drain", "undrain"):
        sub = commands.add_parser(name, help=f"{name} a host at the front door")
        sub.add_argument("host", help="h1, h2, ...")

    update = commands.add_parser("rollout", help="update the hosts to a new .mar, one at a time, under traffic")
    update.add_argument("mar", help="the new model archive")
    return parser


def find_host(fleet, name):
    for host in fleet.hosts(fleet.require()):
        if host.name == name:
            return host
    raise FleetError(f"no host {name!r} in this fleet")


def run(args):
    fleet = Fleet(args.dir)
    if args.command == "start":
        if args.hosts < 1 or args.workers < 1:
            raise FleetError("need at least one host and one worker")
        external = [h.strip() for h in args.external_hosts.split(",") if h.strip()] if args.external_hosts else None
        options = Options(hosts=args.hosts, workers=args.workers, front_port=args.port,
                          listen_address=args.listen_address, loopback=args.loopback, external_hosts=external,
                          mar=args.mar, certificate=args.cert, key=args.key, rate=args.rate, burst=args.burst,
                          body_cap=args.body_cap, read_timeout=args.read_timeout, nginx_workers=args.nginx_workers,
                          metrics_port=args.metrics_port,
                          single_workers=args.single_workers, adaptive_threshold=args.adaptive_threshold,
                          routing="batched" if args.batched_only else "adaptive",
                          admission=args.admission, retry_budget=args.retry_budget, batch_size=args.batch_size)
        if not external and not Path(options.mar).is_file():
            raise FleetError(f"{options.mar} does not exist: run ./build_mar.sh")
        fleet.start(options)
        print(fleet.status())
        print(f"\nTry it:\n  eval \"$({Path(sys.argv[0]).name if sys.argv[0].endswith('.sh') else 'serving/front/fleet.sh'} env)\"\n"
              "  curl --cacert \"$FIZBUZ_CACERT\" -H \"Authorization: Bearer $FIZBUZ_TOKEN\" "
              f"-H 'Content-Type: application/json' -d '{request_body(SMOKE_INPUT).decode()}' \"$FIZBUZ_URL{PREDICT_PATH}\"")
    elif args.command == "stop":
        fleet.stop()
    elif args.command == "status":
        print(fleet.status())
    elif args.command == "env":
        print("\n".join(fleet.env_lines()))
    elif args.command == "reload":
        fleet.reload()
        logging.info("front door reloaded")
    elif args.command == "limits":
        changes = {k: v for k, v in (("rate", args.rate), ("burst", args.burst), ("body_cap", args.body_cap),
                                     ("routing", args.routing), ("adaptive_threshold", args.adaptive_threshold),
                                     ("admission", args.admission), ("retry_budget", args.retry_budget))
                   if v is not None}
        if changes.get("routing", "batched") != "batched" and not all(
                h.single_workers for h in fleet.hosts(fleet.require())):
            raise FleetError("the hosts have no batch-1 registration (started with --batched-only)")
        fleet.update_front(**changes)
        logging.info("front door reloaded with %s", changes)
    elif args.command == "token":
        if args.action == "list":
            print("\n".join(tokens.read(fleet.token_file)))
            return 0
        if not args.name:
            raise FleetError("name the token")
        if args.action == "add":
            value = tokens.add(fleet.token_file, args.name, args.token)
            print(value)
        else:
            tokens.revoke(fleet.token_file, args.name)
        fleet.reload()
        logging.info("token %s %s; front door reloaded", args.name, "added" if args.action == "add" else "revoked")
    elif args.command in ("drain", "undrain"):
        fleet.drain(find_host(fleet, args.host), drained=args.command == "drain")
        logging.info("%s %sed", args.host, args.command)
    elif args.command == "rollout":
        rollout(fleet, Path(args.mar))
    elif args.command == "rollback":
        rollback(fleet)
    return 0


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="==> %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ERRORS as error:
        logging.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
