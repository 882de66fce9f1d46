"""cpp/build.sh refuses clearly when it cannot build (the build itself is the
cli_binary fixture's job)."""

import os
import shutil
import subprocess

import pytest

from fizbuz.contract import ROOT

# slow: a real CMake configure (and a build in one test).
pytestmark = pytest.mark.slow

SCRIPT = ROOT / "cpp" / "build.sh"


def run_script(*args, **env):
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=dict(os.environ, **env)
    )


def path_without(tmp_path, tool):
    """A PATH holding every command on the current PATH except `tool`."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = farm / name
            if name != tool and not os.path.lexists(link):
                link.symlink_to(os.path.join(folder, name))
    assert shutil.which(tool, path=str(farm)) is None
    return str(farm)


def test_help():
    result = run_script("-h")
    assert result.returncode == 0
    assert "Usage: cpp/build.sh" in result.stdout and "FIZBUZ_CPP_BUILD_DIR" in result.stdout


def test_unknown_argument():
    result = run_script("--fast")
    assert result.returncode == 2
    assert "unknown argument '--fast'" in result.stderr


def test_missing_cmake(tmp_path):
    result = run_script(PATH=path_without(tmp_path, "cmake"))
    assert result.returncode == 1
    assert "cmake not found on PATH" in result.stderr


def test_missing_compiler():
    result = run_script(CXX="no-such-compiler++")
    assert result.returncode == 1
    assert "C++ compiler 'no-such-compiler++' not found" in result.stderr


def test_never_clears_a_folder_it_did_not_make(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = run_script(FIZBUZ_CPP_BUILD_DIR=str(precious))
    assert result.returncode == 1
    assert "is not a CMake build folder" in result.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
