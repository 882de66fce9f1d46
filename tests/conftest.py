"""Fixtures shared by unit and end-to-end tests: the real built archive."""

import pytest

from fizbuz import archive
from fizbuz.contract import MAR_FILE_NAME


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
def unpacked_model(mar_path, tmp_path_factory):
    """The archive unpacked as MMS unpacks it: the model_dir a worker sees."""
    return archive.unpack(mar_path, tmp_path_factory.mktemp("unpacked"))
