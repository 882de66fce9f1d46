"""The handler on the real model, for the unit tests that call it: a module
states its batch size as BATCH_SIZE and asks for `service` and `context`."""

import pytest

from fizbuz.handler_harness import load_context, load_service


@pytest.fixture(scope="module")
def service(unpacked_model, request):
    return load_service(unpacked_model, request.module.BATCH_SIZE)


@pytest.fixture
def context(unpacked_model, request):
    return load_context(unpacked_model, request.module.BATCH_SIZE)
