"""The test command runs the linter: `ruff check .` with pyproject's [tool.ruff] rules."""

import subprocess
import sys
from pathlib import Path

from fizbuz.contract import ROOT


def test_ruff_check_is_clean():
    # ruff is installed in the venv beside this Python (requirements-dev.txt).
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
