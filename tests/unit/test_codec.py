import re

import pytest

import fizbuz_codec as codec


def fizzbuzz(n):
    """An independent statement of the game, to check the codec against."""
    text = ("Fizz" if n % 3 == 0 else "") + ("Buzz" if n % 5 == 0 else "")
    return text or str(n)


def test_truth_table_1_to_100():
    assert [codec.true_label(n) for n in range(1, 101)] == [fizzbuzz(n) for n in range(1, 101)]


def test_seed_examples():
    assert codec.true_label(15) == "FizzBuzz"
    assert codec.true_label(3) == "Fizz"
    assert codec.true_label(10) == "Buzz"
    assert codec.true_label(7) == "7"


@pytest.mark.parametrize(
    "number, bits",
    [
        (0, [0] * 10),
        (1, [0] * 9 + [1]),
        (15, [0] * 6 + [1, 1, 1, 1]),
        (512, [1] + [0] * 9),
        (1023, [1] * 10),
    ],
)
def test_encode_is_msb_first(number, bits):
    assert codec.encode(number) == bits


def test_encode_round_trips_every_number():
    for n in range(1024):
        assert int("".join(map(str, codec.encode(n))), 2) == n


@pytest.mark.parametrize("number", [-1, 1024])
def test_encode_refuses_numbers_outside_ten_bits(number):
    with pytest.raises(ValueError):
        codec.encode(number)


def test_input_bounds_leave_room_for_the_next_number():
    assert (codec.MIN_INPUT, codec.MAX_INPUT) == (0, 1022)
    codec.encode(codec.MAX_INPUT + 1)  # the service encodes n + 1


@pytest.mark.parametrize("value", [0, 1, 14, 1022])
def test_validate_accepts_integers_in_range(value):
    assert codec.validate_input({"input.1": value}) == value


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({"input.1": 1023}, "between 0 and 1022"),
        ({"input.1": -1}, "between 0 and 1022"),
        ({"input.1": 14.5}, "must be an integer"),
        ({"input.1": 14.0}, "must be an integer"),
        ({"input.1": True}, "must be an integer"),
        ({"input.1": "x"}, "must be an integer"),
        ({"input.1": None}, "must be an integer"),
        ({"input.1": [14]}, "must be an integer"),
        ({"x": 14}, 'missing key "input.1"'),
        ([14], "JSON object"),
        ("14", "JSON object"),
        (14, "JSON object"),
    ],
)
def test_validate_rejects_with_a_message_naming_the_problem(payload, fragment):
    with pytest.raises(codec.InvalidInput, match=fragment):
        codec.validate_input(payload)


def test_messages_stay_short_for_huge_values():
    with pytest.raises(codec.InvalidInput) as caught:
        codec.validate_input({"input.1": "y" * 10_000})
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b'{"input.1": 14}', {"input.1": 14}),
        (bytearray(b' {"input.1": 14}\n'), {"input.1": 14}),
        ('{"input.1": 14}', {"input.1": 14}),
        ({"input.1": 14}, {"input.1": 14}),  # already decoded by the server
        (b"[1, 2]", [1, 2]),
    ],
)
def test_decode_body_parses_bytes_text_and_passes_decoded_values(raw, expected):
    assert codec.decode_body(raw) == expected


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"", "empty body"),
        (" \n", "empty body"),
        (b"\xff\xfe", "not UTF-8 text (invalid start byte at byte 0)"),
        (b"{oops", "not valid JSON"),
        (b"9" * 5000, "not valid JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_decode_body_refuses_with_a_message(raw, fragment):
    with pytest.raises(codec.InvalidInput, match=re.escape(fragment)):
        codec.decode_body(raw)


def test_payload_from_fields():
    assert codec.payload_from_fields({"input.1": b"29"}) == {"input.1": 29}
    assert codec.payload_from_fields({"input.1": "29", "other": "x"}) == {"input.1": 29}
    with pytest.raises(codec.InvalidInput, match="Content-Type: application/json"):
        codec.payload_from_fields({})
    with pytest.raises(codec.InvalidInput, match="send a JSON body"):
        codec.payload_from_fields({"other": b"1"})
    with pytest.raises(codec.InvalidInput, match="empty body"):
        codec.payload_from_fields({"input.1": b""})


def test_error_reply_shape():
    assert codec.error_reply("nope") == {"error": "nope", "code": 400}
    assert codec.error_reply("too big", 413) == {"error": "too big", "code": 413}
    assert codec.ERROR_STATUS == 400
