"""Fixtures shared by the test folders: the real built archive, and the eager
model with its TorchScript trace (for the C++ runner and the Redis module)."""

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
