"""The model as text: export_onnx.py --summary and the readable ONNX graph, as the README shows them."""

import subprocess
import sys

import onnx

import export_onnx
from fizbuz.contract import ROOT

from fizbuz.contract import ONNX_PATH

COMMITTED_MODEL = ONNX_PATH
# The docs show the model as text on these pages (the README links them).
README = "\n".join((ROOT / "docs" / page).read_text() for page in ("walkthrough.md", "inspect.md"))


def run_export(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "export_onnx.py"), *args], capture_output=True, text=True, timeout=120
    )


def test_summary_cli_lists_the_committed_model_as_the_readme_shows_it():
    result = run_export("--summary")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == export_onnx.summary(onnx.load(str(COMMITTED_MODEL)))
    for label in ("opset:", "input:", "output:", "nodes:", "param:", "parameters:"):
        assert any(line.startswith(label) for line in lines), label
    missing_from_readme = [line for line in lines if line not in README]
    assert missing_from_readme == []


def test_summary_cli_without_a_model_says_what_to_do(tmp_path):
    result = run_export("--summary", "--output", str(tmp_path / "missing.onnx"))
    assert result.returncode == 2
    assert "run ./export_onnx.py first" in result.stderr


def test_readable_graph_shows_every_node_but_no_weight_values():
    model = onnx.load(str(COMMITTED_MODEL))
    text = export_onnx.readable_graph(model)
    assert [line.split(" = ")[1].split()[0] for line in text.splitlines() if " = " in line] == [
        node.op_type for node in model.graph.node
    ]
    assert 'float[100,10] "hidden.weight"' in text and 'float[4] "out.bias"' in text
    assert "{-" not in text and len(text) < 2000  # values would be 1504 numbers
    assert len(model.graph.initializer) == 4  # the model itself keeps its weights


def test_readme_shows_the_onnx_graph_as_export_prints_it():
    text = export_onnx.readable_graph(onnx.load(str(COMMITTED_MODEL)))
    assert [line for line in text.splitlines() if line not in README] == []
