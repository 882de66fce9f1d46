"""The test command's tiers: with arguments it runs only pytest (nothing installed with
apt, nothing built); the provisioning is a step of its own."""

import os
import subprocess

from fizbuz.contract import ROOT

# What provisioning would call: none of them may run when run_tests.sh has arguments.
TOOLS = ("apt-get", "dpkg", "cmake", "make", "g++", "debootstrap")


def test_run_tests_with_arguments_installs_and_builds_nothing(tmp_path):
    # Stand-ins for the tools first on PATH: each one leaves a mark if it is called.
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in TOOLS:
        tool = tools / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/called"\nexit 1\n')
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}")
    result = subprocess.run(
        [str(ROOT / "run_tests.sh"), "--collect-only", "-q", "tests/unit/test_lint.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 tests collected" in result.stdout  # test_lint.py: ruff check, ruff format --check
    assert not (tmp_path / "called").exists(), (tmp_path / "called").read_text()


def test_the_scripts_explain_the_tiers():
    usage = subprocess.run([str(ROOT / "run_tests.sh"), "-h"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0
    assert "--provision-only" in usage.stdout and '-m "not slow"' in usage.stdout
    provision = subprocess.run(
        [str(ROOT / "scripts" / "provision.sh"), "-h"], capture_output=True, text=True, timeout=30
    )
    assert provision.returncode == 0 and "Usage" in provision.stdout
    refused = subprocess.run(
        [str(ROOT / "run_tests.sh"), "--provision-only", "extra"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode != 0 and "takes no other argument" in refused.stderr
