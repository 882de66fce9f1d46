"""The one command: `fizbuz --help` lists every part and benchmark, each part's
own -h works through it, and errors come out as one line with an exit code."""

import subprocess

import pytest

from fizbuz import cli
from fizbuz.contract import ROOT
from fizbuz.errors import FizbuzError

FIZBUZ = ROOT / ".venv/bin/fizbuz"  # the console script ([project.scripts])


def test_help_lists_every_part_and_benchmark():
    result = subprocess.run([str(FIZBUZ), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in [*cli.PARTS, *cli.BENCHES, "settings", "test"]:
        assert f"\n  {name} " in result.stdout, name


@pytest.mark.parametrize("name", sorted(cli.PARTS))
def test_each_part_answers_help_through_the_one_command(name, capsys):
    code = None
    try:
        code = cli.main([name, "-h"])
    except SystemExit as exit_:  # argparse's -h
        code = exit_.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("name", sorted(cli.BENCHES))
def test_each_benchmark_answers_help(name, capsys):
    try:
        code = cli.main(["bench", name, "-h"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_an_unknown_benchmark_is_a_usage_error(capsys):
    assert cli.main(["bench", "nope"]) == 2
    assert "no benchmark 'nope'" in capsys.readouterr().err


def test_a_part_error_is_one_line_with_its_exit_code(monkeypatch, capsys):
    class Broken(FizbuzError):
        exit_code = 3

    def main(argv):
        raise Broken("the port is taken")

    monkeypatch.setitem(cli.PARTS, "broken", cli.Part("fizbuz.errors", "test"))
    monkeypatch.setattr("fizbuz.errors.main", main, raising=False)
    assert cli.run_part("broken", cli.PARTS["broken"], []) == 3
    assert capsys.readouterr().err == "fizbuz broken: the port is taken\n"


def test_start_runs_the_rooms_script_which_prepares_first(monkeypatch):
    # fleet.sh installs nginx and builds the .mar before it starts: `fizbuz fleet start` goes through it.
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv: calls.append(argv) or 0)
    assert cli.main(["fleet", "start", "-n", "1"]) == 0
    assert cli.main(["mms", "start", "--workers", "3"]) == 0
    assert calls == [
        [str(ROOT / "serving/front/fleet.sh"), "start", "-n", "1"],
        [str(ROOT / "start_mms.sh"), "start", "--workers", "3"],
    ]
