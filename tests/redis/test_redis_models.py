"""Models other than FizBuzNet: several inputs and outputs, integer tensors,
and models whose outputs cannot be stored (a scalar, float16, an empty
tensor, not a tensor) or that raise: each an error reply, the server fine."""

import io
import warnings

import pytest
import redis
import torch


def blob(module):
    """TorchScript bytes of `module` (torch.jit is deprecated, but it is what
    LibTorch's torch::jit::load reads)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


class SumAndProduct(torch.nn.Module):
    def forward(self, x, y):
        return x + y, x * y


class Twice(torch.nn.Module):
    def forward(self, x):
        return x * 2


class Scalar(torch.nn.Module):
    def forward(self, x):
        return x.sum()


class Half(torch.nn.Module):
    def forward(self, x):
        return x.half()


class Empty(torch.nn.Module):
    def forward(self, x):
        return x[:0]


class NotATensor(torch.nn.Module):
    def forward(self, x) -> int:
        return 3


class Raises(torch.nn.Module):
    def forward(self, x):
        if bool(x.sum() > 0):
            raise RuntimeError("refusing positive input")
        return x


def test_two_inputs_two_outputs_and_integers(r):
    r.execute_command("AI.MODELSTORE", "sp", "TORCH", "CPU", "BLOB", blob(SumAndProduct()))
    r.execute_command("AI.TENSORSET", "x", "FLOAT", 2, "VALUES", 1.5, 2)
    r.execute_command("AI.TENSORSET", "y", "FLOAT", 2, "VALUES", 4, -1)
    assert r.execute_command("AI.MODELEXECUTE", "sp", "INPUTS", 2, "x", "y", "OUTPUTS", 2, "s", "p") == b"OK"
    assert r.execute_command("AI.TENSORGET", "s", "VALUES") == [b"FLOAT", [2], [b"5.5", b"1"]]
    assert r.execute_command("AI.TENSORGET", "p", "VALUES") == [b"FLOAT", [2], [b"6", b"-2"]]
    r.execute_command("AI.MODELSTORE", "twice", "TORCH", "CPU", "BLOB", blob(Twice()))
    r.execute_command("AI.TENSORSET", "i", "INT64", 3, "VALUES", -(2**40), 0, 7)
    r.execute_command("AI.MODELRUN", "twice", "INPUTS", "i", "OUTPUTS", "o")
    assert r.execute_command("AI.TENSORGET", "o", "VALUES") == [b"INT64", [3], [-(2**41), 0, 14]]


@pytest.mark.parametrize(
    "module,message",
    [
        (Scalar(), "positive dims"),
        (Half(), "not a RedisAI dtype"),
        (Empty(), "positive dims"),
        (NotATensor(), "not tensors"),
        (Raises(), "refusing positive input"),
    ],
)
def test_outputs_that_cannot_be_stored_are_errors(r, module, message):
    r.execute_command("AI.MODELSTORE", "odd", "TORCH", "CPU", "BLOB", blob(module))
    r.execute_command("AI.TENSORSET", "x", "FLOAT", 2, "VALUES", 1, 2)
    with pytest.raises(redis.ResponseError, match=message):
        r.execute_command("AI.MODELRUN", "odd", "INPUTS", "x", "OUTPUTS", "o")
    assert r.exists("o") == 0
    r.execute_command("AI.MODELSTORE", "twice", "TORCH", "CPU", "BLOB", blob(Twice()))
    assert r.execute_command("AI.MODELRUN", "twice", "INPUTS", "x", "OUTPUTS", "o") == b"OK"
