"""Set-up is idempotent; start-up refuses clearly when Java or the archive is missing."""

import subprocess

import pytest

from serving.mms import cli as mms_control
from fizbuz.contract import ROOT


def test_setup_rerun_is_a_quick_no_op():
    # run_tests.sh has just set the venv up, so this run must find nothing to do.
    result = subprocess.run(
        [str(ROOT / "scripts" / "setup_env.sh"), "--dev"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout
    assert "installing" not in result.stdout


def test_setup_explains_a_missing_java(tmp_path):
    # A PATH with the shell tools but no java.
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bash", "dirname", "env", "cat", "sha256sum", "cut", "grep"):
        (tools / name).symlink_to(subprocess.run(["which", name], capture_output=True, text=True).stdout.strip())
    result = subprocess.run(
        [str(ROOT / "scripts" / "setup_env.sh")], capture_output=True, text=True, env={"PATH": str(tools)}, timeout=60
    )
    assert result.returncode == 1
    assert "Java was not found" in result.stderr and "openjdk-17-jre-headless" in result.stderr


def test_start_refuses_without_java(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert mms_control.main(["--run-dir", str(tmp_path / "run"), "start"]) == 1
    assert "Java was not found" in capsys.readouterr().err


def test_start_refuses_without_the_archive(tmp_path, capsys):
    assert mms_control.main(["--run-dir", str(tmp_path / "run"), "start", "--model-store", str(tmp_path)]) == 1
    assert "run ./build_mar.sh" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["32767", "40000"])
def test_start_refuses_ports_mms_cannot_use(tmp_path, capsys, port, model_store):
    assert (
        mms_control.main(
            ["--run-dir", str(tmp_path / "run"), "start", "--model-store", str(model_store), "--inference-port", port]
        )
        == 1
    )
    assert "MMS 1.0.8 only accepts ports" in capsys.readouterr().err
