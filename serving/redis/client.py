#!/usr/bin/env python3
"""The book's client, as a command: store fizbuz.pt in Redis through the
module, then answer numbers with AI.TENSORSET / AI.MODELRUN / AI.TENSORGET.

    .venv/bin/python serving/redis/client.py --port 6379 --store 14 2 4
    14 -> FizzBuzz
    ...

--dialect 1.x sends AI.MODELSTORE ... BLOB and AI.MODELEXECUTE with counts,
as the redisai 1.x client does; the default (0.x) is the book's own code.

Credentials come from the password files start_redis.sh writes (--secrets,
default $FIZBUZ_REDIS_SECRETS or <run folder>/secrets): the model is stored
as the admin user, numbers are answered as the runner user. --no-auth
connects without credentials (a server without ACLs).
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import redis

from fizbuz.contract import TORCHSCRIPT_PATH
from fizbuz_codec import MAX_INPUT, MIN_INPUT, encode, readable
from serving.redis.acl import ADMIN, RUNNER, Secrets


def store(r, model_path, key, dialect):
    model_pt = Path(model_path).read_bytes()
    if dialect == "0.x":
        r.execute_command("AI.MODELSET", key, "TORCH", "CPU", model_pt)
    else:
        r.execute_command("AI.MODELSTORE", key, "TORCH", "CPU", "BLOB", model_pt)


def answer(r, n, key, dialect):
    """The label for n + 1, from the model in Redis."""
    number = n + 1
    inputs = np.array([encode(number)], dtype=np.float32)
    r.execute_command("AI.TENSORSET", "a", "FLOAT", *inputs.shape, "BLOB", inputs.tobytes())
    if dialect == "0.x":
        r.execute_command("AI.MODELRUN", key, "INPUTS", "a", "OUTPUTS", "out")
    else:
        r.execute_command("AI.MODELEXECUTE", key, "INPUTS", 1, "a", "OUTPUTS", 1, "out")
    typ, shape, buf = r.execute_command("AI.TENSORGET", "out", "BLOB")
    return readable(number, int(np.frombuffer(buf, dtype=np.float32).argmax()))


def secrets_for(args):
    if args.secrets is not None:
        return Secrets(args.secrets)
    # The folder start_redis.sh uses for this port (FIZBUZ_REDIS_RUN_DIR, FIZBUZ_REDIS_SECRETS honoured).
    from serving.redis.cli import Settings

    return Settings(dict(os.environ, FIZBUZ_REDIS_PORT=str(args.port))).secrets


def number(text):
    value = int(text)
    if not MIN_INPUT <= value <= MAX_INPUT:
        raise argparse.ArgumentTypeError(f"must be between {MIN_INPUT} and {MAX_INPUT}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("numbers", nargs="+", type=number, help=f"numbers {MIN_INPUT}..{MAX_INPUT}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--key", default="model", help="the model's key (default: %(default)s)")
    parser.add_argument("--store", action="store_true", help="store the model first")
    parser.add_argument("--model", default=TORCHSCRIPT_PATH, help="TorchScript file (default: %(default)s)")
    parser.add_argument("--dialect", choices=["0.x", "1.x"], default="0.x")
    parser.add_argument(
        "--secrets",
        type=Path,
        help="folder of admin.pass and runner.pass "
        "(default: $FIZBUZ_REDIS_SECRETS, else the run folder's secrets/ for --port)",
    )
    parser.add_argument("--no-auth", action="store_true", help="connect without credentials")
    args = parser.parse_args(argv)
    try:

        def connect(user):
            if args.no_auth:
                return redis.Redis(host=args.host, port=args.port)
            return redis.Redis(host=args.host, port=args.port, **secrets_for(args).credentials(user))

        if args.store:
            store(connect(ADMIN), args.model, args.key, args.dialect)
        r = connect(RUNNER)
        for n in args.numbers:
            print(f"{n} -> {answer(r, n, args.key, args.dialect)}")
    except (redis.ConnectionError, redis.ResponseError, OSError) as error:
        print(f"client.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
