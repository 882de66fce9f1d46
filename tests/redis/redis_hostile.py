"""Hostile inputs for the module, shared by test_redis_hostile.py and the
sanitizer run (test_redis_sanitized.py): models that change their input in
place, bad tensor payloads for RESTORE and RDB files, and the peak-RSS probe."""

import io
import warnings

import numpy as np
import torch

from fizbuz_codec import true_class
from redis_inputs import encoder
from redis_payloads import OPCODE_EOF, payload, rdb_len, tensor_body, uint

GOOD = encoder(15)  # a (1, 10) float32 input: 15 -> FizzBuzz
MiB = 1 << 20


def script(module):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


class ZeroesItsInput(torch.nn.Module):
    def forward(self, x):
        x.mul_(0)
        return x + 1


class StrideZero(torch.nn.Module):
    """as_strided_ with stride 0 passes LibTorch's bounds check but makes the
    tensor claim 2**16 elements of a 10-element storage: nbytes() > storage."""

    def forward(self, x):
        y = x * 2
        x.as_strided_([1 << 16], [0])
        return y


class Grows(torch.nn.Module):
    """resize_ reallocates the storage (uninitialised heap) under the key."""

    def forward(self, x):
        y = x * 2
        x.resize_([1 << 20])
        return y


def peak_rss_reset(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def assert_good_run(r):
    assert r.ping()
    r.execute_command("AI.TENSORSET", "good_in", "FLOAT", 1, 10, "BLOB", GOOD.tobytes())
    assert r.execute_command("AI.MODELEXECUTE", "model", "INPUTS", 1, "good_in", "OUTPUTS", 1, "good_out") == b"OK"
    _, _, buf = r.execute_command("AI.TENSORGET", "good_out", "BLOB")
    assert np.frombuffer(buf, np.float32).argmax() == true_class(15)


DATA = bytes(range(40))  # incompressible: Redis stores it as is (no LZF), so the encoder can match DUMP


def bad_tensor_payloads(env):
    neg = (1 << 64) - 1  # -1 as the unsigned number rdb_load reads
    yield "negative dim", payload(tensor_body(env.header, 0, [neg, 10], DATA), env.version)
    yield "negative dims that multiply to 10", payload(tensor_body(env.header, 0, [neg, neg - 9], DATA), env.version)
    yield "huge dims", payload(tensor_body(env.header, 0, [1 << 40, 1 << 40], DATA), env.version)
    yield "512 MiB of dims, 40 bytes", payload(tensor_body(env.header, 0, [1 << 27], DATA), env.version)
    yield "a 0-dim tensor", payload(tensor_body(env.header, 0, [], DATA[:4]), env.version)
    yield "a dim of size 0", payload(tensor_body(env.header, 0, [0, 10], b""), env.version)
    yield "33 dims", payload(tensor_body(env.header, 0, [1] * 33, DATA[:4]), env.version)
    yield "unknown dtype", payload(tensor_body(env.header, 99, [2, 5], DATA), env.version)
    yield "data shorter than the shape", payload(tensor_body(env.header, 0, [2, 5], DATA[:39]), env.version)
    yield (
        "more dims claimed than given",
        payload(env.header + uint(0) + uint(4) + uint(2) + uint(5) + rdb_len(OPCODE_EOF), env.version),
    )
    for keep in (11, 14, 17, 20, 30, len(env.body) - 1):
        yield f"cut after {keep} bytes", env.truncated(keep)
