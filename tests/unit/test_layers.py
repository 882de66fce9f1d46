"""The test command checks the rooms' layering with import-linter (`lint-imports`,
pyproject's [tool.importlinter]): tools over servers over the contract, and no
import cycle inside any room."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fizbuz.contract import ROOT

ROOMS = ("fizbuz", "serving", "bench", "loadtest", "inspection")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # lint-imports is installed beside this Python (requirements-dev.txt); it imports
    # nothing, it reads the sources found on PYTHONPATH.
    tool = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(tool), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_rooms_keep_their_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_rooms(to: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    for room in ROOMS:
        shutil.copytree(ROOT / room, to / room, ignore=shutil.ignore_patterns("__pycache__", "results", "*.png"))


def test_a_server_importing_a_bench_breaks_the_layers(tmp_path):
    # The check can fail: the same contracts over a copy in which MMS's CLI imports a bench.
    copy_rooms(tmp_path)
    cli = tmp_path / "serving/mms/cli.py"
    cli.write_text(cli.read_text() + "\nimport bench.machine  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "serving.mms.cli -> bench.machine" in result.stdout


def test_a_cycle_inside_a_room_breaks_the_contract(tmp_path):
    copy_rooms(tmp_path)
    # Two modules of the front door that import each other.
    (tmp_path / "serving/front/cycle_a.py").write_text("import serving.front.cycle_b  # noqa\n")
    (tmp_path / "serving/front/cycle_b.py").write_text("import serving.front.cycle_a  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "No import cycles" in result.stdout and "BROKEN" in result.stdout
