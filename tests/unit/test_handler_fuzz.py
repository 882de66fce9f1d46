"""Property-based fuzzing of the handler's parsing and validation (hypothesis).

Whatever a client sends, handle() returns one JSON reply per request, never
raises, and each reply is either the right answer (200) for a valid request or
a 400 with a message.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fizbuz_service
from fizbuz.handler_harness import batch_context, load_context, statuses
from request_cases import expected_for_value, expected_reply, strict_json

BATCH_SIZE = 8
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Objects that often carry the real key, with any value under it.
request_objects = st.dictionaries(st.sampled_from(["input.1", "input", "x", ""]), json_values, max_size=3)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    request_objects.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=-5, max_value=1030).map(lambda n: json.dumps({"input.1": n}).encode()),
    st.text(max_size=50).map(lambda t: t.encode("utf-8")),
)
# What MMS may hand over per request: the raw body, or form/multipart fields.
requests_ = st.one_of(
    bodies.map(lambda b: {"body": bytearray(b)}),
    st.dictionaries(st.text(max_size=10), st.binary(max_size=30).map(bytearray), max_size=3),
)


@pytest.fixture(scope="module")
def service(unpacked_model):
    service = fizbuz_service.MXNetModelService()
    service.initialize(load_context(unpacked_model, BATCH_SIZE))
    return service


def expected_answer(request):
    """The right answer if `request` is a valid one, else None."""
    raw = request.get("body")
    if raw is not None:
        return expected_reply(raw)
    raw = request.get("input.1")  # a form field: its value is JSON text
    if raw is None:
        return None
    return expected_for_value(strict_json(raw))


@FUZZ
@given(batch=st.lists(requests_, min_size=1, max_size=BATCH_SIZE))
def test_any_batch_gets_one_right_reply_per_request(service, unpacked_model, batch):
    context = batch_context(load_context(unpacked_model, BATCH_SIZE), len(batch))
    replies = service.handle(batch, context)
    assert len(replies) == len(batch)
    for request, reply, status in zip(batch, replies, statuses(context, len(batch))):
        answer = json.loads(reply)
        expected = expected_answer(request)
        if expected is None:
            assert status == 400
            assert answer["code"] == 400 and isinstance(answer["error"], str) and answer["error"]
        else:
            assert status == 200
            assert answer == expected


@FUZZ
@given(body=st.binary(min_size=0, max_size=2000))
def test_arbitrary_bytes_never_escape_as_exceptions(service, unpacked_model, body):
    context = batch_context(load_context(unpacked_model, BATCH_SIZE), 1)
    (reply,) = service.handle([{"body": bytearray(body)}], context)
    assert statuses(context, 1)[0] in (200, 400)
    json.loads(reply)
