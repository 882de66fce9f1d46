"""bench/v2.py's pure parts: the requests its load tools send (checked with the
handler's own v2 parsers), the Lua literals, the replies it reads, the tools'
reports it parses, the access-log count of gRPC outcomes, the rounds' plans and
the paired ratios. No server and no load tool runs here."""

import json
import re
import struct
import subprocess
import sys

import pytest

import fizbuz_v2
from bench import v2
from bench.v2_grpc_call import pack_messages, pack_replies, read_messages, read_replies
from fizbuz.contract import ROOT, expected_reply


def lua_unquote(literal):
    """The bytes of a Lua string literal as bench/v2.py writes them."""
    assert literal[0] == literal[-1] == '"'
    out, text, at = bytearray(), literal[1:-1], 0
    while at < len(text):
        if text[at] == "\\":
            out.append(int(text[at + 1 : at + 4]))
            at += 4
        else:
            assert text[at] != '"'
            out.append(ord(text[at]))
            at += 1
    return bytes(out)


@pytest.mark.parametrize("n", [1, 16, 64, 256, 1023, 1024])
def test_requests_cover_every_input_in_n_sized_chunks(n):
    chunks = v2.request_numbers(n)
    assert all(len(chunk) == n for chunk in chunks)
    assert {number for chunk in chunks for number in chunk} == set(range(0, 1023))
    assert len(chunks) == -(-1023 // n)


def test_lua_strings_carry_any_bytes():
    data = bytes(range(256)) + b'"\\1\x001' + b'{"a": 1}'
    literal = v2.lua_string(data)
    assert lua_unquote(literal) == data
    assert "\n" not in literal and literal.count('"') == 2
    # A digit after an escape never joins it: escapes are always 3 digits.
    assert v2.lua_string(b"\x011") == '"\\0011"'


def test_json_body_is_a_v2_request_the_handler_parses():
    request = fizbuz_v2.parse_rest(v2.json_body([14, 2, 0]))
    assert list(request.numbers) == [14, 2, 0] and request.rank == 2
    assert [name for name, _ in request.outputs] == ["next_number"]


def test_binary_body_is_a_binary_v2_request_the_handler_parses():
    body, length = v2.binary_body([5, 1022])
    header = json.loads(body[:length])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 16} and "data" not in header["inputs"][0]
    assert body[length:] == struct.pack("<2q", 5, 1022)
    request = fizbuz_v2.parse_rest(body, str(length))
    assert list(request.numbers) == [5, 1022] and request.outputs == [("next_number", True)]


def test_grpc_request_is_a_model_infer_request_the_handler_parses():
    request = fizbuz_v2.parse_grpc(fizbuz_v2.grpc_frame(v2.grpc_request(list(range(64)))))
    assert list(request.numbers) == list(range(64)) and [n for n, _ in request.outputs] == ["next_number"]


def test_card_body_is_the_cards_request():
    assert json.loads(v2.card_body([14])) == {"input.1": 14}
    with pytest.raises(ValueError):
        v2.card_body([1, 2])


@pytest.mark.parametrize("protocol,n", [("card", 1), ("json", 1), ("binary", 1), ("binary", 64), ("json", 16)])
def test_wrk_script_holds_every_body_and_the_fixed_headers(protocol, n):
    target = v2.Target(protocol, n)
    script = target.wrk_script()
    literals = re.findall(r'^  ("(?:[^"\\]|\\\d{3})*")', script, re.M)
    assert [lua_unquote(x) for x in literals] == [body for body, _ in target.bodies()]
    headers = dict(
        (lua_unquote(k), lua_unquote(v)) for k, v in re.findall(r'^wrk\.headers\[("[^"]*")\] = ("[^"]*")', script, re.M)
    )
    expected = {b"Content-Type": b"application/octet-stream" if protocol == "binary" else b"application/json"}
    if protocol == "binary":
        expected[b"Inference-Header-Content-Length"] = str(v2.binary_body(list(range(n)))[1]).encode()
    assert headers == expected
    assert 'wrk.method = "POST"' in script and "WRK_SUMMARY" in script


def test_target_names_and_paths():
    assert v2.Target("grpc", 64).name == "grpc-N64" and v2.Target("card").name == "card"
    assert v2.Target("card").path == "/predictions/fizbuz_package"
    assert v2.Target("binary", 16).path == "/v2/models/fizbuz_package/infer"
    assert v2.Target("grpc").path == "/inference.GRPCInferenceService/ModelInfer"


def bytes_tensor(labels):
    return b"".join(struct.pack("<I", len(x.encode())) + x.encode() for x in labels)


def test_labels_from_each_kind_of_reply():
    numbers = [14, 2, 4]
    labels = v2.expected_labels(numbers)
    assert labels == [expected_reply(n)["next_number"] for n in numbers] and labels[0] == "FizzBuzz"
    assert v2.labels_from_rest("card", json.dumps({"next_number": "Fizz"}).encode()) == ["Fizz"]
    reply = {
        "model_name": "fizbuz_package",
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [3, 4], "data": [0.0] * 12},
            {"name": "next_number", "datatype": "BYTES", "shape": [3, 1], "data": labels},
        ],
    }
    assert v2.labels_from_rest("json", json.dumps(reply).encode()) == labels
    raw = bytes_tensor(labels)
    header = json.dumps(
        {
            "outputs": [
                {"name": "logits", "datatype": "FP32", "shape": [3, 4], "parameters": {"binary_data_size": 48}},
                {
                    "name": "next_number",
                    "datatype": "BYTES",
                    "shape": [3, 1],
                    "parameters": {"binary_data_size": len(raw)},
                },
            ]
        }
    ).encode()
    assert v2.labels_from_rest("binary", header + b"\0" * 48 + raw, len(header)) == labels
    with pytest.raises(ValueError, match="without Inference-Header-Content-Length"):
        v2.labels_from_rest("binary", json.dumps(reply).encode())
    with pytest.raises(ValueError, match="not binary"):
        as_json = json.dumps(reply).encode()
        v2.labels_from_rest("binary", as_json, len(as_json))
    message = fizbuz_v2.MESSAGES["ModelInferResponse"](model_name="fizbuz_package")
    message.outputs.add(name="next_number", datatype="BYTES", shape=[3, 1])
    message.raw_output_contents.append(raw)
    assert v2.labels_from_grpc(message.SerializeToString()) == labels


WRK_OUT = (
    "Running 5s test @ https://127.0.0.1:1/predictions/fizbuz_package\n"
    'WRK_SUMMARY {"requests": 1000, "duration_us": 5000000, "errors": {"connect": 0, "read": 1, '
    '"write": 0, "status": 10, "timeout": 2}, "latency_us": {"p50": 1500, "p90": 3000, "p99": 9000, '
    '"mean": 1800.0, "max": 20000}}\n'
)


def test_parse_wrk_counts_only_2xx_and_every_error():
    figures = v2.parse_wrk(WRK_OUT)
    assert figures["req_per_s"] == 198.0 and figures["errors"] == 13
    assert (figures["p50_ms"], figures["p99_ms"], figures["max_ms"]) == (1.5, 9.0, 20.0)
    with pytest.raises(ValueError):
        v2.parse_wrk("no summary")


H2LOAD_OUT = """starting benchmark...
finished in 2.00s, 250.00 req/s, 40.00KB/s
requests: 503 total, 503 started, 500 done, 498 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 498 2xx, 0 3xx, 1 4xx, 1 5xx
traffic: 80.00KB (81920) total, 23.00KB (23552) headers (space savings 51.00%), 31.25KB (32000) data
                     min         max         mean         sd        +/- sd
time for request:     1.94ms    112.04ms     10.05ms     12.82ms    94.00%
"""


def test_parse_h2load_takes_percentiles_from_its_request_log():
    log = "".join(f"{1000 + i}\t200\t{(i + 1) * 1000}\n" for i in range(100))
    figures = v2.parse_h2load(H2LOAD_OUT, log)
    assert figures["req_per_s"] == 249.0 and figures["requests"] == 500
    assert figures["errors"] == 4  # 2 failed + the 4xx and the 5xx
    assert (figures["p50_ms"], figures["p99_ms"], figures["max_ms"]) == (50.0, 99.0, 100.0)
    assert v2.parse_h2load(H2LOAD_OUT.replace("2.00s", "500.5ms"), log)["seconds"] == 0.5005
    with pytest.raises(ValueError):
        v2.parse_h2load("finished in 1s", log)


def test_percentile_is_nearest_rank():
    assert v2.percentile([1, 2, 3, 4], 50) == 2 and v2.percentile([1, 2, 3, 4], 99) == 4
    assert v2.percentile([], 50) is None


def access(client, status, ustatus, path="/inference.GRPCInferenceService/ModelInfer", grpc="0"):
    return (
        f'127.0.0.1 client={client} [2026-12-03T18:35:43+00:00] "POST {path} HTTP/2.0" {status} '
        f"rt=0.010 upstream=10.1.1.2:3 ustatus={ustatus} urt=0.009 grpc={grpc} retry="
    )


def test_grpc_outcomes_from_the_access_log():
    lines = [
        access("default", 200, "200"),  # answered
        access("default", 200, "502 : 200"),  # retried on another host, answered
        access("", 200, ""),  # refused by the door (no token)
        access("default", 200, "502"),  # the host failed
        access("default", "000", ""),  # abandoned at the run's end
        access("default", 499, ""),
        access("default", 200, "200", path="/predictions/fizbuz_package"),  # not gRPC
        access("default", 200, "200", grpc="3"),
    ]  # the handler refused it (INVALID_ARGUMENT)
    assert v2.grpc_log_outcomes("\n".join(lines)) == (7, 2, 2)


def test_each_round_plans_every_point_once_in_its_own_order():
    plans = [v2.plan_round(i, [1, 16, 64], [1, 16, 64, 256], 64, ["binary", "grpc"], seed=20) for i in range(4)]
    names = [[(t.name, c) for t, c in plan] for plan in plans]
    assert all(sorted(n) == sorted(names[0]) for n in names)
    assert len(names[0]) == 4 * 3 + 2 * 3 and len(set(names[0])) == len(names[0])
    assert len({tuple(n) for n in names}) == 4
    assert names == [
        [(t.name, c) for t, c in v2.plan_round(i, [1, 16, 64], [1, 16, 64, 256], 64, ["binary", "grpc"], seed=20)]
        for i in range(4)
    ]
    # A --batch-concurrency outside --levels still runs the N=1 requests there (the ratio's baseline).
    other = [(t.name, c) for t, c in v2.plan_round(0, [1, 64], [1, 64], 16, ["binary"], seed=1)]
    assert sorted(other) == sorted(
        [(p, 1) for p in v2.PROTOCOLS] + [(p, 64) for p in v2.PROTOCOLS] + [("binary", 16), ("binary-N64", 16)]
    )


def row(target, c, r, rps, n=1):
    return {
        "target": target,
        "concurrency": c,
        "round": r,
        "req_per_s": rps,
        "pred_per_s": rps * n,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
    }


def test_aims_are_paired_ratios_within_rounds():
    rows = []
    for r, scale in enumerate((1.0, 2.0, 0.5)):  # the machine's load moves every figure of a round alike
        rows += [
            row("card", 64, r, 1000 * scale),
            row("json", 64, r, 900 * scale),
            row("binary", 64, r, 800 * scale),
            row("grpc", 64, r, 720 * scale),
            row("binary-N64", 64, r, 200 * scale, n=64),
            row("grpc-N64", 64, r, 100 * scale, n=64),
        ]
    assert v2.paired_ratios(rows, "json", "card", 64, "req_per_s") == pytest.approx([0.9] * 3)
    aims = v2.verdicts(rows, [1, 16, 64], [1, 16, 64, 256], 64, ["binary", "grpc"])
    held = [ok for _, ok in aims]
    # json 0.90 holds, binary 0.80 not; binary N=64 16x holds, grpc N=64 8.9x not; grpc/binary 0.90 holds.
    assert held == [True, False, True, False, True, None]
    assert "0.90x (rounds 0.90–0.90)" in aims[0][0]


def test_grpc_helper_framing_round_trips():
    messages = [b"", b"abc", bytes(300)]
    assert read_messages(pack_messages(messages)) == messages
    replies = [(0, b"reply"), (5, b"unknown model")]
    assert read_replies(pack_replies(replies)) == replies


def test_help_describes_the_run():
    result = subprocess.run(
        [sys.executable, "-m", "bench.v2", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0
    for option in ("--rounds", "--duration", "--warmup", "--levels", "--sizes", "--batch-concurrency"):
        assert option in result.stdout
    assert "h2load" in result.stdout and "1023 inputs" in result.stdout


def test_h2load_count_lasts_about_the_duration_and_fills_every_connection():
    assert v2.h2load_count(None, 5, 64) == 20 * 64
    assert v2.h2load_count(1000.0, 5, 64) == 79 * 64  # 5000 requests, rounded up per connection
    assert v2.h2load_count(10.0, 5, 16) == 20 * 16
