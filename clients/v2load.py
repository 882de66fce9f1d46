"""Answer-checking load through the Open Inference Protocol v2 with the real
standard client, tritonclient (HTTP with or without binary tensors, or gRPC),
over TLS with the bearer token. Runs in .venv-clients (clients/setup.sh).

Every reply is checked against the true FizzBuzz of n + 1; a wrong label, an
error or an exception is counted, never retried here (the front door retries).
Progress goes to stdout as JSON lines {"answered": N} (so a test can act while
the load runs), then one {"summary": {...}} line.

    eval "$(serving/front/fleet.sh env)"
    .venv-clients/bin/python clients/v2load.py --protocol grpc --concurrency 32 --seconds 10
"""

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter

import numpy as np

import fizbuz_codec as codec
from fizbuz import settings
from fizbuz.answers import expected_labels

MODEL = codec.MODEL_NAME


class Tally:
    """Counts shared by every caller."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = self.answered = self.ok = self.wrong = self.failed = 0
        self.errors = Counter()

    def add(self, ok, wrong, error=None):
        """One request: its numbers answered right and wrong, or its error."""
        with self.lock:
            self.sent += 1
            self.ok += ok
            self.wrong += wrong
            if error is None:
                self.answered += 1
            else:
                self.failed += 1
                self.errors[error[:200]] += 1

    def summary(self, seconds):
        # sent, answered, failed: requests; ok, wrong: numbers
        return {
            "sent": self.sent,
            "answered": self.answered,
            "ok": self.ok,
            "wrong": self.wrong,
            "failed": self.failed,
            "seconds": round(seconds, 3),
            "failure_samples": dict(self.errors.most_common(5)),
        }


def caller(protocol):
    """A caller's loop; a failure to even set up its client is counted, not raised."""

    def run(options, stop, tally):
        try:
            (http_caller if protocol == "http" else grpc_caller)(options, stop, tally)
        except Exception as error:  # noqa: BLE001
            tally.add(0, 0, f"caller could not start: {type(error).__name__}: {error}")

    return run


def http_caller(options, stop, tally):
    import gevent.ssl
    import tritonclient.http as client

    def context():
        # gevent's own SSLContext: its sockets yield to the other callers
        # (the stdlib's, from create_default_context, would block them all)
        ssl_context = gevent.ssl.SSLContext(gevent.ssl.PROTOCOL_TLS_CLIENT)
        ssl_context.load_verify_locations(cafile=options.cacert)
        return ssl_context

    server = client.InferenceServerClient(
        options.url, ssl=True, ssl_context_factory=context, connection_timeout=30, network_timeout=30
    )
    headers = {"Authorization": f"Bearer {options.token}"}

    def call(numbers):
        tensor = client.InferInput("input.1", [len(numbers), 1], "INT64")
        tensor.set_data_from_numpy(numbers.reshape(-1, 1), binary_data=options.binary)
        outputs = [client.InferRequestedOutput("next_number", binary_data=options.binary)]
        # tritonclient writes into the headers it is given: a fresh dict each call
        return server.infer(MODEL, [tensor], outputs=outputs, headers=dict(headers)).as_numpy("next_number")

    run_caller(options, stop, tally, call)


def grpc_caller(options, stop, tally):
    import tritonclient.grpc as client

    server = client.InferenceServerClient(options.url, ssl=True, root_certificates=options.cacert)
    metadata = {"authorization": f"Bearer {options.token}"}  # gRPC metadata keys are lower case

    def call(numbers):
        tensor = client.InferInput("input.1", [len(numbers), 1], "INT64")
        tensor.set_data_from_numpy(numbers.reshape(-1, 1))
        outputs = [client.InferRequestedOutput("next_number")]
        return server.infer(MODEL, [tensor], outputs=outputs, headers=dict(metadata), client_timeout=30).as_numpy(
            "next_number"
        )

    run_caller(options, stop, tally, call)


def run_caller(options, stop, tally, call):
    rng = random.Random()
    done = 0
    while not stop.is_set() and (not options.requests or done < options.requests):
        numbers = np.array(
            [rng.randint(codec.MIN_INPUT, codec.MAX_INPUT) for _ in range(options.numbers)], dtype=np.int64
        )
        done += 1
        try:
            # BYTES come back as bytes (binary) or str (JSON)
            labels = [item.decode() if isinstance(item, bytes) else item for item in call(numbers).ravel()]
        except Exception as error:  # noqa: BLE001  a client-side failure is what this tool counts
            tally.add(0, 0, f"{type(error).__name__}: {error}")
            continue
        right = sum(a == b for a, b in zip(labels, expected_labels(numbers))) if len(labels) == len(numbers) else 0
        tally.add(right, len(numbers) - right)


def report(tally, stop, options, started):
    while not stop.wait(options.progress):
        print(json.dumps({"answered": tally.answered, "failed": tally.failed}), flush=True)
        if options.stop_file and os.path.exists(options.stop_file):
            stop.set()
        if time.monotonic() - started > options.seconds:
            stop.set()


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument(
        "--url", default=None, help="host:port (env FIZBUZ_GRPC_URL for grpc, else FIZBUZ_URL without its scheme)"
    )
    settings.add_flag(parser, "cacert", "--cacert")
    parser.add_argument("--concurrency", type=int, default=32, help="callers, each with its own client")
    parser.add_argument("--numbers", type=int, default=1, help="numbers per request (1..1024)")
    parser.add_argument(
        "--json",
        dest="binary",
        action="store_false",
        help="HTTP: tensors as JSON (default: binary, tritonclient's default)",
    )
    parser.add_argument("--requests", type=int, default=0, help="requests per caller (0: until stopped)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long at the latest")
    parser.add_argument("--stop-file", help="stop when this file exists")
    parser.add_argument("--progress", type=float, default=0.2, help="seconds between progress lines")
    options = parser.parse_args(argv)
    if options.url is None:
        if options.protocol == "grpc":
            options.url = settings.value("grpc_url")
        else:
            options.url = (settings.value("url") or "").split("://", 1)[-1] or None
    options.token = settings.value("token") or ""  # never on a command line
    missing = [
        name
        for name, value in (("--url", options.url), ("--cacert", options.cacert), ("FIZBUZ_TOKEN", options.token))
        if not value
    ]
    if missing:
        parser.error(f'missing {", ".join(missing)}: eval "$(serving/front/fleet.sh env)" first')
    if not 1 <= options.numbers <= 1024:
        parser.error("--numbers must be 1..1024")
    return options


def main(argv=None):
    options = parse(argv)
    tally, stop = Tally(), threading.Event()
    started = time.monotonic()
    if options.protocol == "http":
        import gevent  # tritonclient.http runs on gevent: the callers are greenlets

        callers = [gevent.spawn(caller("http"), options, stop, tally) for _ in range(options.concurrency)]
        reporter = gevent.spawn(report_greenlet, tally, stop, options, started)
        gevent.joinall(callers)
        stop.set()
        reporter.join()
    else:
        threads = [
            threading.Thread(target=caller("grpc"), args=(options, stop, tally), daemon=True)
            for _ in range(options.concurrency)
        ]
        reporter = threading.Thread(target=report, args=(tally, stop, options, started), daemon=True)
        for thread in threads + [reporter]:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        reporter.join()
    print(json.dumps({"summary": tally.summary(time.monotonic() - started)}), flush=True)
    return 0 if tally.failed == 0 and tally.wrong == 0 else 1


def report_greenlet(tally, stop, options, started):
    import gevent

    while not stop.is_set():
        gevent.sleep(options.progress)
        print(json.dumps({"answered": tally.answered, "failed": tally.failed}), flush=True)
        if (options.stop_file and os.path.exists(options.stop_file)) or time.monotonic() - started > options.seconds:
            stop.set()


if __name__ == "__main__":
    sys.exit(main())
