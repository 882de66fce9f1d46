#!/usr/bin/env python3
"""The Open Inference Protocol v2 through the front door (issue 20, item 5
"Figures"): the card's path, v2 JSON, v2 binary and v2 gRPC side by side, on
one fleet, in one run.

A private fleet (one host: a network namespace with MMS, 2 batched workers and
1 batch-1 worker, adaptive routing as shipped; the nginx front door with HTTPS
and a bearer token; free ports, a temp folder) is started, measured and stopped.

Targets (every request through the front door, TLS, `Authorization: Bearer`):
  card     POST /predictions/fizbuz_package {"input.1": n}               wrk + Lua
  json     POST /v2/models/fizbuz_package/infer, JSON data, N numbers    wrk + Lua
  binary   the same with the binary tensor extension both ways          wrk + Lua
  grpc     inference.GRPCInferenceService/ModelInfer over HTTP/2 (h2load, nghttp2-client,
           in count mode: the warm-up's rate x --duration requests, about --duration s)
v2 requests ask for the `next_number` output only (what the card's path answers).

1. Answers: before any load, every target's bodies (the very ones its load tool
   sends) are sent and every answer checked: all 1023 inputs, one request per
   input for N=1, N-sized requests otherwise (gRPC through grpcio in the
   standard clients' venv, .venv-clients: clients/setup.sh).
2. Load: --rounds rounds; in each, for every concurrency of --levels, the four
   protocols at N=1, and at --batch-concurrency the v2 binary and gRPC requests
   of --sizes numbers; the groups and the targets within them in a different
   (seeded) order each round. Each timed run follows --warmup untimed seconds at
   the same target and concurrency. req/s counts 2xx answers; predictions/s =
   req/s x N; p50/p99 from the tools' own figures (wrk's latency histogram;
   h2load's per-request log, the same send-to-last-byte time). Medians over
   rounds, ratios paired within rounds.
3. Outcomes under load: wrk counts non-2xx and socket errors; h2load only HTTP
   statuses, and a gRPC error travels in a 200's trailers. So each gRPC run is
   also checked through the front door's access log (every ModelInfer line must
   carry the token's client name and a host's 200: the door's own refusals have
   none) and the host's handler metrics (no 4xx/5xx answered during the run).

Writes bench/results/v2/{v2.md, v2.json, v2.png}.
"""

import argparse
import concurrent.futures
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fizbuz import settings
from fizbuz.contract import MAR_FILE_NAME, MAX_INPUT, MIN_INPUT, MODEL_NAME, MODEL_STORE, PREDICT_PATH, ROOT
from fizbuz.answers import expected_labels

HERE = Path(__file__).resolve().parent
INPUTS = list(range(MIN_INPUT, MAX_INPUT + 1))
INPUT_NAME, LABEL_OUTPUT = "input.1", "next_number"
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
HEADER_LENGTH = "Inference-Header-Content-Length"
PROTOCOLS = ("card", "json", "binary", "grpc")
LABELS = {"card": "card's path", "json": "v2 JSON", "binary": "v2 binary", "grpc": "v2 gRPC"}
SUMMARY_MARKER = "WRK_SUMMARY "


def say(message):
    print(f"==> {message}", flush=True)


def int_list(text):
    return [int(part) for part in text.split(",") if part.strip()]


# ------------------------------------------------------------ requests (pure)


def request_numbers(n):
    """The N-sized requests that cover all 1023 inputs: consecutive chunks of
    the inputs, the last one wrapping around to the start."""
    count = math.ceil(len(INPUTS) / n)
    cycle = INPUTS * (1 + (count * n) // len(INPUTS))
    return [cycle[i * n : (i + 1) * n] for i in range(count)]


def card_body(numbers):
    if len(numbers) != 1:
        raise ValueError("the card's path takes one number per request")
    return json.dumps({INPUT_NAME: numbers[0]}).encode()


def json_body(numbers):
    return json.dumps(
        {
            "inputs": [{"name": INPUT_NAME, "datatype": "INT64", "shape": [len(numbers), 1], "data": numbers}],
            "outputs": [{"name": LABEL_OUTPUT}],
        },
        separators=(",", ":"),
    ).encode()


def binary_body(numbers):
    """(body, JSON header length): the JSON header, then the numbers as
    little-endian int64; the labels asked back binary (the output's
    `binary_data`, as tritonclient asks)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "datatype": "INT64",
                    "shape": [len(numbers), 1],
                    "parameters": {"binary_data_size": 8 * len(numbers)},
                }
            ],
            "outputs": [{"name": LABEL_OUTPUT, "parameters": {"binary_data": True}}],
        },
        separators=(",", ":"),
    ).encode()
    return header + struct.pack(f"<{len(numbers)}q", *numbers), len(header)


def grpc_request(numbers):
    """A serialized (unframed) ModelInferRequest, raw little-endian int64 input."""
    import fizbuz_v2  # protobuf: only where a gRPC target is built

    message = fizbuz_v2.MESSAGES["ModelInferRequest"](model_name=MODEL_NAME)
    message.inputs.add(name=INPUT_NAME, datatype="INT64", shape=[len(numbers), 1])
    message.raw_input_contents.append(struct.pack(f"<{len(numbers)}q", *numbers))
    message.outputs.add(name=LABEL_OUTPUT)
    return message.SerializeToString()


def lua_string(data):
    """A Lua string literal of any bytes: printable ASCII as is, the rest
    (and quote, backslash) as 3-digit decimal escapes, so a following digit
    never joins an escape."""
    out = []
    for byte in data:
        if 32 <= byte < 127 and byte not in (34, 92):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


# bench/post_inputs.lua (its thread offsets and its one-line summary) with the
# request it makes replaced: these bodies in turn, with these headers only.
LUA_TEMPLATE = """%(post_inputs)s
-- added by bench/v2.py: POST these bodies in turn instead.
local bodies = {
%(bodies)s
}
wrk.headers["Content-Type"] = nil
%(headers)s

function request()
  local body = bodies[counter %% #bodies + 1]
  counter = counter + 1
  return wrk.format(nil, nil, nil, body)
end
"""


def lua_script(bodies, headers):
    """wrk's script for these bodies (bytes) and fixed headers {name: value}."""
    header_lines = "\n".join(
        f"wrk.headers[{lua_string(k.encode())}] = {lua_string(str(v).encode())}" for k, v in headers.items()
    )
    return LUA_TEMPLATE % {
        "post_inputs": (HERE / "post_inputs.lua").read_text(),
        "bodies": ",\n".join(f"  {lua_string(b)}" for b in bodies),
        "headers": header_lines,
    }


@dataclass
class Target:
    protocol: str
    n: int = 1

    @property
    def name(self):
        return self.protocol if self.n == 1 else f"{self.protocol}-N{self.n}"

    @property
    def label(self):
        return f"{LABELS[self.protocol]}, N={self.n}"

    @property
    def path(self):
        return {"card": PREDICT_PATH, "grpc": GRPC_PATH}.get(self.protocol, INFER_PATH)

    def bodies(self):
        """[(body bytes, extra headers)], one per request of the cycle."""
        out = []
        for numbers in request_numbers(self.n):
            if self.protocol == "card":
                out.append((card_body(numbers), {"Content-Type": "application/json"}))
            elif self.protocol == "json":
                out.append((json_body(numbers), {"Content-Type": "application/json"}))
            elif self.protocol == "binary":
                body, length = binary_body(numbers)
                out.append((body, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(length)}))
            else:
                out.append((grpc_request(numbers), {}))
        return out

    def wrk_script(self):
        bodies = self.bodies()
        headers = bodies[0][1]
        if any(h != headers for _, h in bodies):  # one header set for all (N fixed: one header length)
            raise ValueError(f"{self.name}: the bodies need different headers")
        return lua_script([b for b, _ in bodies], headers)


# ------------------------------------------------------------ replies (pure)


def bytes_tensor(raw):
    """BYTES elements: each a 4-byte little-endian length, then the bytes."""
    items, at = [], 0
    while at < len(raw):
        (length,) = struct.unpack("<I", raw[at : at + 4])
        items.append(raw[at + 4 : at + 4 + length].decode())
        at += 4 + length
    return items


def labels_from_rest(protocol, body, header_length=None):
    """The labels of a REST reply (card: one label; v2 JSON; v2 binary, whose
    labels must come back binary)."""
    if protocol == "card":
        return [json.loads(body)[LABEL_OUTPUT]]
    if protocol == "binary" and header_length is None:
        raise ValueError("a binary request's reply came without Inference-Header-Content-Length")
    if header_length is None:
        reply = json.loads(body)
        (output,) = [o for o in reply["outputs"] if o["name"] == LABEL_OUTPUT]
        return list(output["data"])
    header = json.loads(body[:header_length])
    at = header_length
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            if output["name"] == LABEL_OUTPUT:
                raise ValueError("next_number came back as JSON, not binary")
            continue
        if output["name"] == LABEL_OUTPUT:
            return bytes_tensor(body[at : at + size])
        at += size
    raise ValueError("no next_number output in the reply")


def labels_from_grpc(reply_bytes):
    import fizbuz_v2

    reply = fizbuz_v2.MESSAGES["ModelInferResponse"].FromString(reply_bytes)
    for index, output in enumerate(reply.outputs):
        if output.name == LABEL_OUTPUT:
            return bytes_tensor(reply.raw_output_contents[index])
    raise ValueError("no next_number output in the reply")


# ------------------------------------------------------------ tools' reports (pure)


def parse_wrk(stdout):
    """bench/v2.py's Lua summary line -> figures (req/s from 2xx answers only)."""
    summary = next(
        (line[len(SUMMARY_MARKER) :] for line in stdout.splitlines() if line.startswith(SUMMARY_MARKER)), None
    )
    if summary is None:
        raise ValueError("no WRK_SUMMARY line in wrk's output")
    figures = json.loads(summary)
    seconds = figures["duration_us"] / 1e6
    errors = figures["errors"]
    latency = figures["latency_us"]
    good = figures["requests"] - errors["status"]
    return {
        "requests": figures["requests"],
        "good": good,
        "seconds": seconds,
        "req_per_s": good / seconds,
        "errors": sum(errors.values()),
        "p50_ms": latency["p50"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000,
    }


H2_FINISHED = re.compile(r"^finished in ([\d.]+)(ms|s),")
H2_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
H2_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load_count(rate, seconds, connections):
    """Requests for an h2load run of about `seconds` at `rate` req/s (None: not
    measured yet), at least 20 per connection, a whole number per connection."""
    per_connection = max(20, math.ceil((rate or 0) * seconds / connections))
    return per_connection * connections


def percentile(sorted_values, q):
    """Nearest rank (as wrk's histogram reports it) of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_h2load(stdout, log_text):
    """h2load's summary and its --log-file (start µs, status, elapsed µs per
    request) -> the same figures as parse_wrk: req/s from 2xx answers,
    p50/p99/max of the per-request times."""
    seconds = requests = status = None
    for line in stdout.splitlines():
        line = line.strip()
        if m := H2_FINISHED.match(line):
            seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        elif m := H2_REQUESTS.match(line):
            requests = [int(v) for v in m.groups()]
        elif m := H2_STATUS.match(line):
            status = [int(v) for v in m.groups()]
    if seconds is None or requests is None or status is None:
        raise ValueError("h2load's output lacks its summary lines")
    total, started, done, succeeded, failed, errored, timeout = requests
    elapsed = sorted(
        int(fields[2]) for fields in (line.split("\t") for line in log_text.splitlines()) if len(fields) >= 3
    )
    ms = [v / 1000 for v in elapsed]
    return {
        "requests": done,
        "good": status[0],
        "seconds": seconds,
        "req_per_s": status[0] / seconds,
        "errors": failed + errored + timeout + status[2] + status[3] + status[1],
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else None,
    }


ACCESS_LINE = re.compile(
    r'client=(\S*) \[[^\]]*\] "POST ' + re.escape(GRPC_PATH) + r' HTTP/2\.0" (\d{3}) .*? ustatus=(.*?) urt='
)


GRPC_OK_FIELD = " grpc=0 "  # the door's gRPC status, followed by the retry budget's field


def grpc_log_outcomes(text):
    """(ModelInfer lines, of them answered by a host for a known token, of them
    abandoned by the client). The door's refusals (token, rate, size) have no
    client name or no host status; a host's failure shows as its last try's
    status. A load tool ending its run drops the requests still in flight
    (status 000 or 499: at most one per connection)."""
    total = good = abandoned = 0
    for line in text.splitlines():
        m = ACCESS_LINE.search(line)
        if not m:
            continue
        total += 1
        client, status, upstream = m.groups()
        last_try = re.split(r", | : ", upstream.strip())[-1] if upstream.strip() else ""
        if status in ("000", "499"):
            abandoned += 1
        elif client and status == "200" and last_try == "200" and GRPC_OK_FIELD in line:
            good += 1
    return total, good, abandoned


# ------------------------------------------------------------ plan and figures (pure)


def plan_round(round_index, levels, sizes, batch_c, size_protocols, seed):
    """[(Target, c)] for one round: a group per concurrency (the four protocols
    at N=1; at batch_c also the N-sized requests), groups and targets in a
    seeded order of their own each round."""
    rng = random.Random(seed * 1000 + round_index)
    groups = []
    for c in sorted(set(levels) | {batch_c}):
        group = [(Target(p), c) for p in PROTOCOLS] if c in levels else [(Target(p), c) for p in size_protocols]
        if c == batch_c:
            group += [(Target(p, n), c) for p in size_protocols for n in sizes if n != 1]
        rng.shuffle(group)
        groups.append(group)
    rng.shuffle(groups)
    return [point for group in groups for point in group]


def values(rows, target, c, key):
    return [r[key] for r in rows if r["target"] == target and r["concurrency"] == c and r.get(key) is not None]


def median(rows, target, c, key):
    found = values(rows, target, c, key)
    return statistics.median(found) if found else None


def paired_ratios(rows, target, other, c, key, other_c=None):
    """target/other per round, both measured in that round."""
    other_c = c if other_c is None else other_c

    def value(name, level, index):
        return next(
            (r[key] for r in rows if r["target"] == name and r["concurrency"] == level and r["round"] == index), None
        )

    out = []
    for index in sorted({r["round"] for r in rows}):
        a, b = value(target, c, index), value(other, other_c, index)
        if a and b:
            out.append(a / b)
    return out


def ratio_summary(ratios):
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def verdicts(rows, levels, sizes, batch_c, size_protocols):
    """The issue's aims: [(text, holds or None when not measured)]."""
    out = []

    def text(ratio):
        return f"{ratio[0]:.2f}x (rounds {ratio[1]:.2f}–{ratio[2]:.2f})"

    top = max(levels)
    for protocol in ("json", "binary"):
        ratio = ratio_summary(paired_ratios(rows, protocol, "card", top, "req_per_s"))
        if ratio:
            out.append(
                (
                    f"c={top} req/s: {LABELS[protocol]} {median(rows, protocol, top, 'req_per_s'):,.0f} vs the "
                    f"card's path {median(rows, 'card', top, 'req_per_s'):,.0f}: {text(ratio)}; aim >= 0.85x",
                    ratio[0] >= 0.85,
                )
            )
    if 64 in sizes:
        for protocol in size_protocols:
            ratio = ratio_summary(paired_ratios(rows, f"{protocol}-N64", protocol, batch_c, "pred_per_s"))
            if ratio:
                out.append(
                    (
                        f"c={batch_c} predictions/s, {LABELS[protocol]}: N=64 "
                        f"{median(rows, f'{protocol}-N64', batch_c, 'pred_per_s'):,.0f} vs N=1 "
                        f"{median(rows, protocol, batch_c, 'pred_per_s'):,.0f}: {text(ratio)}; aim >= 10x",
                        ratio[0] >= 10,
                    )
                )
    ratio = ratio_summary(paired_ratios(rows, "grpc", "binary", top, "req_per_s"))
    if ratio:
        out.append(
            (
                f"c={top} req/s: v2 gRPC {median(rows, 'grpc', top, 'req_per_s'):,.0f} vs REST (v2 binary) "
                f"{median(rows, 'binary', top, 'req_per_s'):,.0f}: {text(ratio)}; aim >= 0.85x",
                ratio[0] >= 0.85,
            )
        )
    if 64 in sizes and "grpc" in size_protocols and "binary" in size_protocols:
        ratio = ratio_summary(paired_ratios(rows, "grpc-N64", "binary-N64", batch_c, "req_per_s"))
        if ratio:
            out.append((f"c={batch_c}, N=64 (beside the aims): gRPC / REST binary predictions/s {text(ratio)}", None))
    return out


# ------------------------------------------------------------ the run (servers, tools)


def h2load_binary():
    return shutil.which("h2load")


def clients_python():
    venv = settings.value("clients_venv")
    return venv / "bin" / "python"


class Bench:
    def __init__(self, fleet, state, directory):
        self.fleet, self.dir = fleet, directory
        from serving.front import tokens

        self.host = fleet.hosts(state)[0]
        self.address = state["front"]["listen"]
        self.cafile = state["front"]["certificate"]
        self.token = tokens.read(fleet.token_file)["default"]
        self.access_log = fleet.dir / "front" / "logs" / "access.log"
        self.tool_log = directory / "tools.log"
        self.grpc_files = {}
        self.scripts = {}
        self.rates = {}  # (target, c) -> the last req/s h2load measured

    # answers
    def _connection(self, local):
        if getattr(local, "connection", None) is None:
            host, port = self.address.rsplit(":", 1)
            context = ssl.create_default_context(cafile=self.cafile)
            local.connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        return local.connection

    def check(self, target, clients=8):
        """Every body of the target's cycle sent once, every label checked;
        returns the inputs checked (all 1023), exits on a wrong answer."""
        numbers = request_numbers(target.n)
        bodies = target.bodies()
        if target.protocol == "grpc":
            wrong = self._check_grpc(numbers, [b for b, _ in bodies])
        else:
            local = threading.local()

            def ask(index):
                body, headers = bodies[index]
                headers = dict(headers, Authorization=f"Bearer {self.token}")
                for attempt in (0, 1):  # a kept-alive connection the door closed: once more on a new one
                    connection = self._connection(local)
                    try:
                        connection.request("POST", target.path, body=body, headers=headers)
                        response = connection.getresponse()
                        reply = response.read()
                        break
                    except (http.client.HTTPException, OSError):
                        connection.close()
                        local.connection = None
                        if attempt:
                            raise
                length = response.getheader(HEADER_LENGTH)
                try:
                    labels = labels_from_rest(target.protocol, reply, int(length) if length else None)
                except (ValueError, KeyError, TypeError):
                    labels = None
                if response.status != 200 or labels != expected_labels(numbers[index]):
                    return numbers[index], response.status, reply[:200]
                return None

            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                wrong = [row for row in pool.map(ask, range(len(bodies))) if row]
        if wrong:
            raise SystemExit(f"{target.label}: {len(wrong)} of {len(bodies)} requests answered wrong, e.g. {wrong[0]}")
        return len({n for chunk in numbers for n in chunk})

    def _check_grpc(self, numbers, messages):
        from bench.v2_grpc_call import pack_messages, read_replies

        python = clients_python()
        if not python.exists():
            say(f"no {python}: making the standard clients' venv (clients/setup.sh)")
            subprocess.run([str(ROOT / "clients" / "setup.sh")], check=True, timeout=900)
        requests, replies = self.dir / "grpc-check.in", self.dir / "grpc-check.out"
        requests.write_bytes(pack_messages(messages))
        subprocess.run(
            [
                str(python),
                str(HERE / "v2_grpc_call.py"),
                self.address,
                self.cafile,
                self.token,
                str(requests),
                str(replies),
            ],
            check=True,
            timeout=300,
        )
        wrong = []
        for chunk, (code, body) in zip(numbers, read_replies(replies.read_bytes())):
            try:
                labels = labels_from_grpc(body) if code == 0 else None
            except Exception:  # noqa: BLE001  a reply that does not decode is a wrong answer
                labels = None
            if labels != expected_labels(chunk):
                wrong.append((chunk[:4], code, body[:200]))
        return wrong

    # load
    def handler_errors(self):
        from serving.front.network import run_in
        from serving.metrics.scrape import scrape

        samples = run_in(self.host.namespace, scrape, f"http://127.0.0.1:{self.host.metrics_port}/metrics")
        return sum(samples.total("fizbuz_requests_total", status=s) for s in ("4xx", "5xx"))

    def _tool(self, command, seconds):
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL)
        with open(self.tool_log, "a") as log:
            log.write(f"$ {' '.join(command)}\n{result.stdout[-3000:]}{result.stderr[-3000:]}\n")
        if result.returncode != 0:
            raise SystemExit(
                f"{command[0]} failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-500:] or result.stdout[-500:]}"
            )
        return result.stdout

    def wrk(self, target, c, seconds):
        script = self.scripts.get(target.name)
        if script is None:
            script = self.scripts[target.name] = self.dir / f"{target.name}.lua"
            script.write_text(target.wrk_script())
        from bench.load_generator import wrk_binary

        command = [
            wrk_binary() or "wrk",
            "-t",
            str(min(2, c)),
            "-c",
            str(c),
            "-d",
            f"{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            "-H",
            f"Authorization: Bearer {self.token}",
            f"https://{self.address}{target.path}",
        ]
        return parse_wrk(self._tool(command, seconds))

    def h2load(self, target, c, seconds):
        """h2load in count mode (-n): its timed mode (-D) now and then never
        exits after stopping its clients (2 in about 60 runs at c=64 here). The
        count is the last rate measured for this target and concurrency times
        `seconds` (at least 20 requests per connection); a first warm-up with
        no rate yet sends 20 per connection."""
        data = self.grpc_files.get(target.name)
        if data is None:
            import fizbuz_v2

            data = self.grpc_files[target.name] = self.dir / f"{target.name}.grpc"
            data.write_bytes(fizbuz_v2.grpc_frame(target.bodies()[0][0]))
        rate = self.rates.get((target.name, c))
        count = h2load_count(rate, seconds, c)
        log_file = self.dir / "h2load-requests.log"
        log_file.unlink(missing_ok=True)  # h2load appends
        command = [
            h2load_binary() or "h2load",
            "-t",
            str(min(2, c)),
            "-c",
            str(c),
            "-m",
            "1",
            "-n",
            str(count),
            "-d",
            str(data),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-H",
            f"authorization: Bearer {self.token}",
            f"--log-file={log_file}",
            f"https://{self.address}{target.path}",
        ]
        # A run is cut at 60 s past its expected length (then the whole bench stops: the fleet is stopped).
        stdout = self._tool(command, seconds if rate else 10)
        figures = parse_h2load(stdout, log_file.read_text())
        if figures["req_per_s"] > 0:
            self.rates[(target.name, c)] = figures["req_per_s"]
        return figures

    def run(self, target, c, seconds, warmup):
        tool = self.h2load if target.protocol == "grpc" else self.wrk
        log_at = self.access_log.stat().st_size if self.access_log.exists() else 0
        errors_before = self.handler_errors()
        warm = tool(target, c, warmup) if warmup else None
        if target.protocol == "grpc" and not warm:  # no warm-up to size h2load's count on: an untimed run does
            warm = tool(target, c, seconds)
        figures = tool(target, c, seconds)
        row = {
            "target": target.name,
            "protocol": target.protocol,
            "n": target.n,
            "concurrency": c,
            "req_per_s": round(figures["req_per_s"], 1),
            "pred_per_s": round(figures["req_per_s"] * target.n, 1),
            "p50_ms": figures["p50_ms"],
            "p99_ms": figures["p99_ms"],
            "max_ms": figures["max_ms"],
            "requests": figures["requests"],
            "errors": figures["errors"] + (warm["errors"] if warm else 0),
        }
        if target.protocol == "grpc":
            time.sleep(1.2)  # the access log is buffered (flush=1s)
            with open(self.access_log, "rb") as log:
                log.seek(log_at)
                total, good, abandoned = grpc_log_outcomes(log.read().decode(errors="replace"))
            done = figures["requests"] + (warm["requests"] if warm else 0)
            row.update(grpc_log_lines=total, grpc_log_ok=good, grpc_log_abandoned=abandoned, grpc_done=done)
            # Wrong: a line neither answered nor abandoned, more abandoned than the runs' connections
            # (h2load's end drops at most one request per connection), fewer answered than h2load got.
            row["errors"] += (
                (total - good - abandoned) + max(0, abandoned - c * (2 if warm else 1)) + max(0, done - good)
            )
        row["handler_errors"] = self.handler_errors() - errors_before
        row["errors"] += int(row["handler_errors"])
        row["load_avg_1m"] = round(os.getloadavg()[0], 2)
        return row


# ------------------------------------------------------------ results


def write(rows, args, output, settings_lines, checked_lines, command):
    output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    aims = verdicts(rows, args.levels, args.sizes, args.batch_concurrency, args.size_protocols)
    (output / "v2.json").write_text(
        json.dumps(
            {
                "run": stamp,
                "command": command,
                "settings": settings_lines,
                "aims": [{"text": t, "holds": ok} for t, ok in aims],
                "rows": rows,
            },
            indent=1,
        )
    )

    def cell(target, c, key, fmt):
        found = values(rows, target, c, key)
        if not found:
            return "–"
        low, high = min(found), max(found)
        return f"{fmt(statistics.median(found))} ({fmt(low)}–{fmt(high)})"

    def errors(target, c):
        return sum(r["errors"] for r in rows if r["target"] == target and r["concurrency"] == c)

    def num(v):
        return f"{v:,.0f}"

    def ms(v):
        return f"{v:.2f}"

    lines = [f"# The Open Inference Protocol v2 through the front door ({stamp})", "", f"Made by: `{command}`", ""]
    lines += [f"- {line}" for line in settings_lines] + [""]
    lines += [
        "## Protocols side by side (N=1: one number per request)",
        "",
        f"Median over {args.rounds} interleaved rounds of {args.duration} s per point, each after "
        f"{args.warmup} s untimed at the same target and concurrency (range over rounds in brackets). "
        "errors: every non-2xx answer or socket error of the timed and untimed runs, plus for gRPC any "
        "ModelInfer the access log shows without a host's 200 and any 4xx/5xx the host's handler counted.",
        "",
        "| c | protocol | req/s (range) | p50 ms (range) | p99 ms (range) | errors |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in args.levels:
        for protocol in PROTOCOLS:
            if not values(rows, protocol, c, "req_per_s"):
                continue
            lines.append(
                f"| {c} | {LABELS[protocol]} | {cell(protocol, c, 'req_per_s', num)} | "
                f"{cell(protocol, c, 'p50_ms', ms)} | {cell(protocol, c, 'p99_ms', ms)} | "
                f"{errors(protocol, c)} |"
            )
    bc = args.batch_concurrency
    lines += [
        "",
        f"## Numbers per request (c={bc})",
        "",
        "predictions/s = req/s x N.",
        "",
        "| protocol | N | predictions/s (range) | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for protocol in args.size_protocols:
        for n in args.sizes:
            name = Target(protocol, n).name
            if not values(rows, name, bc, "req_per_s"):
                continue
            lines.append(
                f"| {LABELS[protocol]} | {n} | {cell(name, bc, 'pred_per_s', num)} | "
                f"{num(median(rows, name, bc, 'req_per_s'))} | {ms(median(rows, name, bc, 'p50_ms'))} | "
                f"{ms(median(rows, name, bc, 'p99_ms'))} | {errors(name, bc)} |"
            )
    lines += ["", "## The issue's aims (ratios paired within rounds: median, range)", ""]
    lines += [f"- {'' if ok is None else ('holds: ' if ok else '**does not hold**: ')}{t}" for t, ok in aims]
    lines += ["", "## Answers and outcomes", ""] + [f"- {line}" for line in checked_lines]
    grpc_rows = [r for r in rows if r["protocol"] == "grpc"]
    if grpc_rows:
        lines.append(
            f"- gRPC under load: {sum(r['grpc_done'] for r in grpc_rows):,} requests done by h2load "
            f"(timed + untimed), {sum(r['grpc_log_lines'] for r in grpc_rows):,} ModelInfer lines in the "
            f"access log, {sum(r['grpc_log_ok'] for r in grpc_rows):,} of them with the token's client "
            f"name and a host's 200, {sum(r['grpc_log_abandoned'] for r in grpc_rows):,} abandoned "
            "when h2load ended a run (000/499; at most one per connection); handler 4xx/5xx during gRPC runs: "
            f"{sum(r['handler_errors'] for r in grpc_rows):.0f}. A line counts as answered only with the "
            "door's gRPC status 0 (the access log's `grpc=` field)."
        )
    lines += ["", "![req/s by protocol and concurrency; predictions/s by numbers per request](v2.png)", ""]
    (output / "v2.md").write_text("\n".join(lines))
    try:
        plot(rows, args, output / "v2.png", stamp)
    except Exception as error:  # noqa: BLE001  the figures stand without the picture
        print(f"v2.py: no plot: {error}", file=sys.stderr)
    print("\n".join(lines), flush=True)
    return all(ok is not False for _, ok in aims)


def plot(rows, args, path, stamp):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    xs = list(range(len(args.levels)))
    width = 0.8 / len(PROTOCOLS)
    for i, protocol in enumerate(PROTOCOLS):
        heights = [median(rows, protocol, c, "req_per_s") or 0 for c in args.levels]
        left.bar([x + (i - 1.5) * width for x in xs], heights, width, label=LABELS[protocol])
    left.set_xticks(xs, [f"c={c}" for c in args.levels])
    left.set_ylabel("requests per second (2xx), N=1")
    left.set_title("one number per request")
    left.legend(fontsize=9)
    left.grid(True, axis="y", alpha=0.3)
    for protocol in args.size_protocols:
        points = [(n, median(rows, Target(protocol, n).name, args.batch_concurrency, "pred_per_s")) for n in args.sizes]
        points = [(n, v) for n, v in points if v]
        right.plot([n for n, _ in points], [v for _, v in points], marker="o", label=LABELS[protocol])
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(args.sizes, [str(n) for n in args.sizes])
    right.set_xlabel("numbers per request (N)")
    right.set_ylabel("predictions per second")
    right.set_title(f"c={args.batch_concurrency}")
    right.legend(fontsize=9)
    right.grid(True, which="both", alpha=0.3)
    figure.suptitle(f"Open Inference Protocol v2 through the front door; medians of {args.rounds} rounds ({stamp})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m bench.v2", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--levels",
        type=int_list,
        default=[1, 16, 64],
        help="concurrencies for the four protocols at N=1 (default 1,16,64)",
    )
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=[1, 16, 64, 256],
        help="numbers per request for the predictions/s figures (default 1,16,64,256)",
    )
    parser.add_argument(
        "--size-protocols",
        type=lambda t: [p for p in t.split(",") if p],
        default=["binary", "grpc"],
        help="protocols measured at --sizes (default binary,grpc; json works too)",
    )
    parser.add_argument(
        "--batch-concurrency", type=int, default=64, help="the concurrency of the --sizes figures (default 64)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="timed seconds per point (default 5)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed seconds before each timed run, same target and concurrency (default 1)",
    )
    parser.add_argument("--seed", type=int, default=20, help="seed of the rounds' orders (default 20)")
    parser.add_argument("--mar", default=str(MODEL_STORE / MAR_FILE_NAME))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "v2")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    bad = [p for p in args.size_protocols if p not in PROTOCOLS or p == "card"]
    if bad:
        raise SystemExit(f"--size-protocols: {', '.join(bad)} cannot carry N numbers (binary, grpc or json)")
    arguments = sys.argv[1:] if argv is None else list(argv)
    clients_venv = settings.source("clients_venv") is not None
    command = " ".join(
        ([f"FIZBUZ_CLIENTS_VENV={settings.value('clients_venv')}"] if clients_venv else [])
        + ["python -m bench.v2", *arguments]
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the fleet is stopped
    from bench import load_generator, machine
    from fizbuz.lifecycle import free_port
    from serving.front.fleet import Fleet, Options
    from serving.front.nginx import find_nginx

    load_generator.FINDERS.setdefault("nghttp2-client", h2load_binary)
    load_generator.ensure_tools("wrk", "nginx", "nghttp2-client")
    if not Path(args.mar).is_file():
        raise SystemExit(f"{args.mar} does not exist: run ./build_mar.sh")
    directory = Path(tempfile.mkdtemp(prefix="fbz-v2-"))
    say(f"work folder (fleet, scripts, tool log): {directory}")
    fleet = Fleet(directory / "fleet")
    started = time.monotonic()
    load_before = os.getloadavg()
    targets = [Target(p) for p in PROTOCOLS] + [
        Target(p, n) for p in args.size_protocols for n in args.sizes if n != 1 or p not in PROTOCOLS
    ]
    checked_lines, rows = [], []
    try:
        state = fleet.start(Options(hosts=1, workers=2, front_port=free_port(), metrics_port=0, mar=args.mar))
        bench = Bench(fleet, state, directory)
        for target in targets:
            t0 = time.monotonic()
            inputs = bench.check(target)
            line = (
                f"{target.label}: all {inputs} inputs right in {len(request_numbers(target.n))} requests "
                f"({time.monotonic() - t0:.1f} s)"
            )
            checked_lines.append(line)
            say(line)
        say(f"{args.rounds} rounds, {args.warmup} s untimed + {args.duration} s per point")
        for round_index in range(args.rounds):
            plan = plan_round(
                round_index, args.levels, args.sizes, args.batch_concurrency, args.size_protocols, args.seed
            )
            for position, (target, c) in enumerate(plan):
                row = dict(bench.run(target, c, args.duration, args.warmup), round=round_index, position=position)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        try:
            fleet.stop()
        except Exception as error:  # noqa: BLE001
            print(f"v2.py: stopping the fleet failed: {error}", file=sys.stderr)
    load_after = os.getloadavg()
    minutes = (time.monotonic() - started) / 60
    info = dict(machine.describe(load_generator.wrk_binary(), find_nginx()))
    h2load_version = subprocess.run([h2load_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    settings_lines = [
        f"one run, {minutes:.1f} min; one fleet host (network namespace) with MMS 1.0.8: `fizbuz_package` batch 16, "
        "delay 1 ms, 2 workers, and the batch-1 registration (1 worker); adaptive routing as shipped; the nginx "
        f"front door (HTTPS, bearer token, {state['front']['workers']} workers) in the root namespace",
        "REST: wrk, 2 threads (1 at c=1), a Lua script of the target's bodies in turn (N=1: the 1023 inputs; "
        "N>1: consecutive chunks of the inputs); gRPC: h2load, 2 threads (1 at c=1), -m 1 (one stream per "
        "connection: c concurrent requests, as wrk), TLS with ALPN h2, one fixed framed request per target; "
        "in count mode (-n: the warm-up's rate x the duration; its -D mode now and then never exits)",
        "v2 requests ask for `next_number` only; binary requests get it back binary (the output's `binary_data`, "
        "as tritonclient asks)",
        f"CPU: {info['CPU']}; memory {info['memory']}; {info['OS']}; {info['wrk']}; {h2load_version}; {info['nginx']}",
        f"load average (1/5/15 min) before: {'/'.join(f'{v:.2f}' for v in load_before)}, after: "
        f"{'/'.join(f'{v:.2f}' for v in load_after)}; median of the 1-minute figure at the end of each point: "
        f"{statistics.median(r['load_avg_1m'] for r in rows):.2f}; the 2 cores are shared with other engineers' jobs"
        if rows
        else "no rows",
    ]
    good = write(rows, args, args.output, settings_lines, checked_lines, command)
    shutil.rmtree(directory, ignore_errors=True)
    return 0 if good else 3


if __name__ == "__main__":
    sys.exit(main())
