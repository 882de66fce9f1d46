"""Fixtures shared by unit and end-to-end tests: the real built archive."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory):
    """A model store holding a .mar built by the real build_mar.sh and model-archiver."""
    store = tmp_path_factory.mktemp("model_store")
    env = dict(os.environ, MODEL_STORE=str(store))
    result = subprocess.run([str(ROOT / "build_mar.sh")], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return store


@pytest.fixture(scope="session")
def mar_path(model_store):
    return model_store / "fizbuz_package.mar"


@pytest.fixture(scope="session")
def unpacked_model(mar_path, tmp_path_factory):
    """The archive unpacked as MMS unpacks it: the model_dir a worker sees."""
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(mar_path) as archive:
        archive.extractall(target)
    return target
