"""scripts/debian_packages.sh: every package a set-up script or bench asks for has a pin,
and an unknown one is refused before apt-get runs."""

import re
import subprocess

import pytest

from bench import load_generator
from fizbuz.contract import ROOT

SCRIPT = ROOT / "scripts" / "debian_packages.sh"


def pins():
    listed = subprocess.run([str(SCRIPT), "--list"], capture_output=True, text=True, timeout=30, check=True).stdout
    return dict(line.split("=", 1) for line in listed.split())


def requested_packages():
    """Package names passed to debian_packages.sh by the project's own scripts."""
    requested = set()
    for script in ROOT.glob("**/*.sh"):
        if ".venv" in script.parts or script == SCRIPT:
            continue
        for call in re.findall(r'debian_packages\.sh"? ([^\n|;&]+)', script.read_text()):
            requested.update(word for word in call.split() if re.fullmatch(r"[a-z0-9.+-]+", word))
    return requested


def test_every_requested_package_has_a_pin():
    asked = requested_packages()
    assert {"nginx", "prometheus", "chromium", "redis-server", "cmake"} <= asked
    assert asked <= set(pins())


def test_pins_are_version_globs():
    assert pins()["nginx"] == "1.22.*" and pins()["redis-server"].startswith("5:7.0")


def test_a_package_without_a_pin_is_refused_before_apt_runs():
    result = subprocess.run([str(SCRIPT), "no-such-package"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "has no pin" in result.stderr


def test_installed_packages_print_nothing():
    result = subprocess.run([str(SCRIPT), "nginx"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == ""


def test_the_benches_tools_have_pins():
    assert set(load_generator.FINDERS) <= set(pins())


def test_a_missing_bench_tool_names_the_installer(monkeypatch):
    monkeypatch.setitem(load_generator.FINDERS, "wrk", lambda: None)
    with pytest.raises(load_generator.LoadError, match=r"missing wrk: run scripts/debian_packages\.sh wrk"):
        load_generator.ensure_tools("wrk", "nginx", allow_install=False)
    load_generator.ensure_tools("nginx", allow_install=False)  # present: nothing to do, nothing raised
