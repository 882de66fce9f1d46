"""The load and bench tools answer -h and refuse bad settings with a clear message,
without starting anything."""

import os
import subprocess
import sys

import pytest

from fizbuz.contract import ROOT

PYTHON_TOOLS = ["bench/run_bench.py", "bench/bench_handler.py"]
# Development tools run as modules of the installed project (python -m ...).
TOOL_MODULES = ["loadtest.loadgen", "loadtest.openloop", "loadtest.soak", "loadtest.faults", "inspection.render_netron"]


def run(command, **env):
    return subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **env),
        stdin=subprocess.DEVNULL,
    )


def test_serve_sh_answers_help():
    result = run([ROOT / "serving" / "flask" / "serve.sh", "-h"])
    assert result.returncode == 0
    assert "usage" in result.stdout.lower() and "WORKER_CLASS" in result.stdout


@pytest.mark.parametrize("tool", PYTHON_TOOLS)
def test_python_tools_answer_help(tool):
    result = run([sys.executable, ROOT / tool, "-h"])
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "Examples" in result.stdout


def test_serve_sh_refuses_an_unknown_worker_class(tmp_path):
    result = run([ROOT / "serving" / "flask" / "serve.sh"], WORKER_CLASS="tornado", FLASK_RUN_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "WORKER_CLASS) must be sync or gthread" in result.stderr
    assert not (tmp_path / "gunicorn.pid").exists()


def test_bench_lists_the_sweep_and_picks_subsets():
    result = run(
        [
            sys.executable,
            ROOT / "bench" / "run_bench.py",
            "--list",
            "--batch-sizes",
            "4",
            "--delays",
            "0,3",
            "--configs",
            "mms-*,nginx",
        ]
    )
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["mms-b1-w1", "mms-b1-w2", "mms-b4-d0", "mms-b4-d3", "nginx"]


def test_bench_refuses_a_pattern_that_matches_nothing():
    result = run([sys.executable, ROOT / "bench" / "run_bench.py", "--configs", "tensorflow"])
    assert result.returncode == 1
    assert "matches none of" in result.stderr


@pytest.mark.parametrize("module", TOOL_MODULES)
def test_tool_modules_answer_help(module):
    result = run([sys.executable, "-m", module, "-h"])
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {module}" in result.stdout


def test_inspect_model_sh_answers_help_and_refuses_stray_arguments(tmp_path):
    script = ROOT / "inspection" / "inspect_model.sh"
    assert "NETRON_PORT" in run([script, "-h"]).stdout
    result = run([script, "stop", "extra"], FIZBUZ_RUN_DIR=str(tmp_path))
    assert result.returncode == 2 and "unexpected arguments: extra" in result.stderr
    result = run([script, "start", "a.onnx", "b.onnx"], FIZBUZ_RUN_DIR=str(tmp_path))
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
