"""Fixtures for the TorchScript / C++ LibTorch path: the real binary, built by
the real cpp/build.sh (the traced fizbuz.pt is in tests/conftest.py)."""

import os
import subprocess

import pytest
import torch

from fizbuz_codec import MAX_INPUT, MIN_INPUT, readable
from fizbuz.model import encode_batch
from fizbuz.contract import ROOT


@pytest.fixture(scope="session")
def cli_binary():
    """cpp/build.sh into the checkout's build/cpp: a clean clone builds from
    scratch (about a minute), later runs only rebuild what changed."""
    result = subprocess.run(
        [str(ROOT / "cpp" / "build.sh")], capture_output=True, text=True, timeout=900, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    binary = ROOT / "build" / "cpp" / "fizbuz_cli"
    assert f"built {binary}" in result.stdout
    return binary


@pytest.fixture(scope="session")
def expected_answers(eager_model):
    """What the eager PyTorch model answers for every valid input n (the label of n + 1)."""
    numbers = list(range(MIN_INPUT, MAX_INPUT + 1))
    with torch.no_grad():
        classes = eager_model(encode_batch([n + 1 for n in numbers])).argmax(dim=1).tolist()
    return {n: readable(n + 1, c) for n, c in zip(numbers, classes)}
