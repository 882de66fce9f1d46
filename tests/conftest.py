"""Fixtures shared by the test folders: the real built archive, and the eager
model with its TorchScript trace (for the C++ runner and the Redis module); the
hypothesis profiles; and the rule that keeps `-m "not slow"` free of apt, builds and fleets."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

from fizbuz import archive
from fizbuz.contract import MAR_FILE_NAME

# Hypothesis: "ci" replays the same examples every run (derandomize), so a CI failure
# is reproducible and a green run is not luck; "dev" explores new examples each run.
# HYPOTHESIS_PROFILE picks one; CI=true (set by the CI runner) means "ci". Registered
# here, before the test modules are imported, so their @settings build on it. No
# deadline in either: how long an example takes is not what these tests check.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(HYPOTHESIS_PROFILE)


# MMS's warm-up before ready (FIZBUZ_MMS_WARMUP, default 4 passes over every input)
# adds about 4 s to each start on this machine: off for the tests' many servers, on for
# the shared one of tests/e2e (whose start output its test reads) and in the containers.
os.environ.setdefault("FIZBUZ_MMS_WARMUP", "0")


def pytest_report_header(config):
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} (derandomize={settings.default.derandomize})"


# What puts a test in the `slow` tier wherever it lives: a fixture it uses (directly or
# through another fixture) that needs apt packages, a build, or a fleet of servers.
# Marked here so that `-m "not slow"` never installs or builds anything, and a new
# test using one of these is in the right tier without anyone remembering the mark.
SLOW_FIXTURES = {
    "nginx_installed": "apt nginx (serving/front/setup_nginx.sh)",
    "fleet": "a fleet: MMS hosts in network namespaces behind nginx",
    "prometheus": "apt prometheus (serving/metrics/setup_prometheus.sh)",
    "module_path": "builds the Redis module (serving/redis/build.sh)",
    "cli_binary": "builds the C++ runner (cpp/build.sh)",
    "clients_python": "the standard v2 clients' own venv (clients/setup.sh)",
}
# Folders whose every test is slow: each starts apt's redis-server with the built module.
SLOW_FOLDERS = {Path(__file__).resolve().parent / "redis"}
# Fixtures that build from scratch on a fresh machine (minutes on 2 cores): the first
# test to use one pays for the build, so these tests get a longer per-test timeout
# than pyproject's default.
BUILD_FIXTURES = {"module_path", "cli_binary", "running_stack", "running_cluster"}
BUILD_TIMEOUT = 1800


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if SLOW_FIXTURES.keys() & set(item.fixturenames) or SLOW_FOLDERS & set(path.parents):
            item.add_marker(pytest.mark.slow)
        if BUILD_FIXTURES & set(item.fixturenames) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory):
    """A model store holding a .mar built by the real build_mar.sh and model-archiver,
    staged in a temp folder so the tests never rewrite tracked files."""
    store = tmp_path_factory.mktemp("build") / "model_store"
    try:
        archive.build(store)
    except archive.BuildError as error:
        pytest.fail(str(error))
    return store


@pytest.fixture(scope="session")
def mar_path(model_store):
    return model_store / MAR_FILE_NAME


@pytest.fixture(scope="session")
def eager_model():
    # Imported here: torch loads only for the tests that use the model.
    from fizbuz.contract import WEIGHTS
    from fizbuz.model import load_model

    return load_model(WEIGHTS)


@pytest.fixture(scope="session")
def torchscript_model(eager_model, tmp_path_factory):
    """A fizbuz.pt traced from the committed weights, in a temp folder."""
    from fizbuz import torchscript

    path = tmp_path_factory.mktemp("torchscript") / "fizbuz.pt"
    torchscript.export(eager_model, path)
    return path


@pytest.fixture(scope="session")
def unpacked_model(mar_path, tmp_path_factory):
    """The archive unpacked as MMS unpacks it: the model_dir a worker sees."""
    return archive.unpack(mar_path, tmp_path_factory.mktemp("unpacked"))
