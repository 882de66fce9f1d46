"""fleet.sh's commands: start|stop|status|env|reload|token|drain|undrain|rollout|rollback."""

import argparse
import logging
import sys
from pathlib import Path

from fizbuz.contract import PREDICT_PATH, SMOKE_INPUT, request_body
from serving.front import tokens
from serving.front.fleet import Fleet, FleetError, Options
from serving.front.rollout import rollback, rollout
from fizbuz import logs, settings
from fizbuz.errors import FizbuzError


def build_parser():
    parser = argparse.ArgumentParser(prog="fleet.sh", description=__doc__)
    settings.add_flag(parser, "fleet_dir", "--dir")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="start the hosts and the front door (or restart what died)")
    settings.add_flag(start, "hosts", "-n", "--hosts")
    settings.add_flag(start, "workers", "--workers")
    settings.add_flag(start, "front_port", "--port")
    settings.add_flag(start, "front_address", "--listen-address")
    start.add_argument("--loopback", action="store_true", help="127.x addresses instead of namespaces, even as root")
    start.add_argument(
        "--external-hosts",
        metavar="ADDR:PORT,...",
        help="real hosts already running start_mms.sh: start only the front door over them",
    )
    settings.add_flag(start, "mar", "--mar")
    settings.add_flag(start, "tls_cert", "--cert")
    settings.add_flag(start, "tls_key", "--key")
    settings.add_flag(start, "rate", "--rate")
    settings.add_flag(start, "burst", "--burst")
    settings.add_flag(start, "body_cap", "--body-cap")
    settings.add_flag(start, "nginx_workers", "--nginx-workers")
    settings.add_flag(start, "front_metrics_port", "--metrics-port")
    settings.add_flag(start, "read_timeout", "--read-timeout")
    settings.add_flag(start, "fleet_single_workers", "--single-workers")
    settings.add_flag(
        start,
        "adaptive_threshold",
        "--adaptive-threshold",
        what="requests arriving while at most this many client connections are open go to batch 1 "
        "(measured by bench/adaptive.py)",
    )
    settings.add_flag(start, "admission", "--admission")
    settings.add_flag(start, "retry_budget", "--retry-budget")
    settings.add_flag(start, "retry_share", "--retry-share")
    settings.add_flag(start, "retry_floor", "--retry-floor")
    settings.add_flag(start, "batch_size", "--batch-size", what="each host's largest batch")
    settings.add_flag(start, "fleet_mms_user", "--mms-user")
    start.add_argument(
        "--batched-only",
        action="store_true",
        default=not settings.value("adaptive"),
        help="adaptive batching off: every request to the batched registration, no batch-1 "
        "workers (env FIZBUZ_ADAPTIVE=0)",
    )

    for name, text in (
        ("stop", "stop and remove everything of the fleet"),
        ("status", "hosts, workers, front door"),
        ("env", "export lines: FIZBUZ_URL, FIZBUZ_GRPC_URL, FIZBUZ_TOKEN, FIZBUZ_CACERT, FIZBUZ_METRICS_URL"),
        ("reload", "re-read the tokens file and settings (graceful)"),
        ("rollback", "put every host back on its previous .mar, one at a time"),
    ):
        commands.add_parser(name, help=text)

    limits = commands.add_parser("limits", help="change the rate limit / body cap and reload")
    limits.add_argument("--rate", type=int)
    limits.add_argument("--burst", type=int)
    limits.add_argument("--body-cap")
    limits.add_argument(
        "--routing",
        choices=["adaptive", "batched", "single"],
        help="adaptive (default), batched (off) or single (batch 1 only; needs batch-1 workers)",
    )
    limits.add_argument("--adaptive-threshold", type=int)
    limits.add_argument("--admission", type=int, help="requests in flight per host entry; 0: off")
    limits.add_argument("--retry-budget", type=int, help="retries in flight per host entry; 0: unbounded")
    limits.add_argument("--retry-share", type=float, help="retries per recent success; 0: no share budget")
    limits.add_argument("--retry-floor", type=float, help="retries/s allowed whatever the successes")

    # allow_abbrev=False: the old `--token VALUE` is refused, not taken for --token-file.
    token = commands.add_parser(
        "token", help="add, revoke or list bearer tokens (reloads the front door)", allow_abbrev=False
    )
    token.add_argument("action", choices=["add", "revoke", "list"])
    token.add_argument("name", nargs="?")
    # Never the value itself on the command line: other local users read it in ps / /proc.
    token.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the token's value from FILE ('-': standard input); default: a new random one",
    )

    for name in ("drain", "undrain"):
        sub = commands.add_parser(name, help=f"{name} a host at the front door")
        sub.add_argument("host", help="h1, h2, ...")

    update = commands.add_parser("rollout", help="update the hosts to a new .mar, one at a time, under traffic")
    update.add_argument("mar", help="the new model archive")
    return parser


def read_token_value(source):
    """A token's value from a file or standard input ('-'), or None: a new random one."""
    if source is None:
        return None
    try:
        text = (sys.stdin.read() if source == "-" else Path(source).read_text()).strip()
    except (OSError, UnicodeDecodeError) as error:
        raise tokens.TokenError(f"cannot read the token from {source}: {error}") from None
    if not text:
        raise tokens.TokenError(f"no token in {source}")
    return text


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
        options = Options(
            hosts=args.hosts,
            workers=args.workers,
            front_port=args.port,
            listen_address=args.listen_address,
            loopback=args.loopback,
            external_hosts=external,
            mar=args.mar,
            certificate=args.cert,
            key=args.key,
            rate=args.rate,
            burst=args.burst,
            body_cap=args.body_cap,
            read_timeout=args.read_timeout,
            nginx_workers=args.nginx_workers,
            metrics_port=args.metrics_port,
            single_workers=args.single_workers,
            adaptive_threshold=args.adaptive_threshold,
            routing="batched" if args.batched_only else "adaptive",
            admission=args.admission,
            retry_budget=args.retry_budget,
            retry_share=args.retry_share,
            retry_floor=args.retry_floor,
            batch_size=args.batch_size,
            mms_user=args.mms_user,
        )
        if not external and not Path(options.mar).is_file():
            raise FleetError(f"{options.mar} does not exist: run ./build_mar.sh")
        fleet.start(options)
        print(fleet.status())
        script = Path(sys.argv[0]).name if sys.argv[0].endswith(".sh") else "serving/front/fleet.sh"
        body = request_body(SMOKE_INPUT).decode()
        print(
            f'\nTry it:\n  eval "$({script} env)"\n'
            '  curl --cacert "$FIZBUZ_CACERT" -H "Authorization: Bearer $FIZBUZ_TOKEN" '
            f"-H 'Content-Type: application/json' -d '{body}' \"$FIZBUZ_URL{PREDICT_PATH}\""
        )
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
        changes = {
            k: v
            for k, v in (
                ("rate", args.rate),
                ("burst", args.burst),
                ("body_cap", args.body_cap),
                ("routing", args.routing),
                ("adaptive_threshold", args.adaptive_threshold),
                ("admission", args.admission),
                ("retry_budget", args.retry_budget),
                ("retry_share", args.retry_share),
                ("retry_floor", args.retry_floor),
            )
            if v is not None
        }
        if changes.get("routing", "batched") != "batched" and not all(
            h.single_workers for h in fleet.hosts(fleet.require())
        ):
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
            value = tokens.add(fleet.token_file, args.name, read_token_value(args.token_file))
            print(value)  # to the caller only (stdout); the logs name the token, never show it
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
    logs.setup("progress", stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except FizbuzError as error:
        logging.error("%s", error)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
