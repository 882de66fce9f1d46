"""The test command runs the linter and the formatter's check: `ruff check .` and
`ruff format --check .` with pyproject's [tool.ruff] settings."""

import subprocess
import sys
from pathlib import Path

from fizbuz.contract import ROOT


def test_ruff_check_is_clean():
    # ruff is installed in the venv beside this Python (requirements-dev.txt).
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, "run .venv/bin/ruff format .\n" + result.stdout + result.stderr
