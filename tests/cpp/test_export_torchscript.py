"""fizbuz/torchscript.py: the traced model answers like the eager one."""

import subprocess
import sys

import pytest
import torch

from fizbuz import torchscript
from fizbuz.contract import WEIGHTS
from fizbuz.model import load_model

# The tests trace and load TorchScript on purpose; torch.jit warns that it is deprecated.
# slow: the fixtures build the C++ runner (about a minute from a clean checkout).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit")]


def run_script(*args):
    return subprocess.run(
        [sys.executable, "-m", "fizbuz.torchscript", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_export_prints_the_graph_and_proves_parity(tmp_path):
    output = tmp_path / "out" / "fizbuz.pt"
    result = run_script("--output", output)
    assert result.returncode == 0, result.stderr
    assert "aten::linear" in result.stdout and "aten::sigmoid" in result.stdout
    assert "parity on all 1024 inputs" in result.stderr
    assert "argmax mismatches = 0" in result.stderr
    assert output.is_file()
    # Re-running overwrites in place.
    assert run_script("--output", output, "--quiet").returncode == 0


def test_reloaded_model_matches_eager_on_all_inputs(eager_model, torchscript_model):
    max_diff, mismatched = torchscript.parity_report(eager_model, torchscript_model)
    assert max_diff <= torchscript.TOLERANCE
    assert mismatched == []


def test_traced_model_takes_any_batch_size(torchscript_model):
    reloaded = torch.jit.load(str(torchscript_model))
    for size in (1, 7, 64):
        assert reloaded(torch.zeros(size, 10)).shape == (size, 4)


def test_parity_report_catches_a_different_model(eager_model, tmp_path):
    other = load_model(WEIGHTS)
    with torch.no_grad():
        other.out.bias.add_(torch.tensor([0.0, 50.0, 0.0, 0.0]))  # now says Fizz everywhere
    path = tmp_path / "other.pt"
    torchscript.export(other, path)
    max_diff, mismatched = torchscript.parity_report(eager_model, path)
    assert max_diff > torchscript.TOLERANCE
    assert len(mismatched) > 500


def test_check_fails_on_a_stale_model(tmp_path):
    """--check against weights the file was not traced from exits 1 and says so."""
    other = load_model(WEIGHTS)
    with torch.no_grad():
        other.hidden.weight.mul_(-1.0)
    stale = tmp_path / "stale.pt"
    torchscript.export(other, stale)
    result = run_script("--check", "--output", stale)
    assert result.returncode == 1
    assert "PARITY FAILED" in result.stderr
    assert stale.read_bytes()  # --check leaves the file alone


def test_check_fails_on_a_file_that_is_not_torchscript(tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a model")
    result = run_script("--check", "--output", bogus)
    assert result.returncode == 1
    assert "PARITY FAILED: cannot run" in result.stderr


def test_missing_inputs_are_clear_errors(tmp_path):
    result = run_script("--check", "--output", tmp_path / "absent.pt")
    assert result.returncode == 2
    assert "no TorchScript model at" in result.stderr
    result = run_script("--weights", tmp_path / "absent.pth", "--output", tmp_path / "x.pt")
    assert result.returncode == 2
    assert "no trained weights at" in result.stderr


def test_help():
    result = run_script("-h")
    assert result.returncode == 0
    assert "--check" in result.stdout and "--output" in result.stdout
