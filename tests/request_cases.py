"""Requests every serving path must treat alike, and the answers they must give.

Shared by the MMS and the Flask end-to-end tests so both are held to one list.
"""

import json

import torch

from fizbuz import answers
from fizbuz.contract import WEIGHTS
from fizbuz.model import encode_batch, load_model
from fizbuz_codec import INPUT_KEY, MAX_INPUT, MIN_INPUT, readable

# (name, body, Content-Type, a fragment of the 400 message)
BAD_BODIES = [
    ("invalid JSON", b'{"input.1": 14', "application/json", "not valid JSON"),
    ("non-UTF-8", b"\xff\xfe\xfd", "application/json", "not UTF-8"),
    ("empty", b"", "application/json", "empty body"),
    ("text content type", b"hello", "text/plain", "not valid JSON"),
    ("octet-stream", b"\x00\x01", "application/octet-stream", "not valid JSON"),
    ("out of range", b'{"input.1": 1023}', "application/json", "between 0 and 1022"),
    ("negative", b'{"input.1": -1}', "application/json", "between 0 and 1022"),
    ("float", b'{"input.1": 14.5}', "application/json", "must be an integer"),
    ("boolean", b'{"input.1": true}', "application/json", "must be an integer"),
    ("null", b'{"input.1": null}', "application/json", "must be an integer"),
    ("string", b'{"input.1": "14"}', "application/json", "must be an integer"),
    ("array", b"[14]", "application/json", "JSON object"),
    ("nested object", b'{"input.1": {"input.1": 14}}', "application/json", "must be an integer"),
    ("missing key", b'{"input": 14}', "application/json", 'missing key "input.1"'),
    ("huge number", b'{"input.1": 1' + b"0" * 400 + b"}", "application/json", "between 0 and 1022"),
    ("too many digits", b'{"input.1": ' + b"9" * 5000 + b"}", "application/json", "not valid JSON"),
    ("deep nesting", b"[" * 50_000, "application/json", "nested too deeply"),
    ("infinity", b'{"input.1": Infinity}', "application/json", "must be an integer"),
    # curl -d sends application/x-www-form-urlencoded unless told otherwise, and
    # form decoding drops a JSON text sent that way: the client is told what to send.
    ("JSON sent as a form", b'{"input.1": 14}', "application/x-www-form-urlencoded", "Content-Type: application/json"),
]
BAD_BODY_IDS = [case[0] for case in BAD_BODIES]


def torch_labels():
    """What the PyTorch model says for every request n (it is asked about n + 1)."""
    model = load_model(WEIGHTS)
    numbers = list(range(0, MAX_INPUT + 1))
    with torch.no_grad():
        classes = model(encode_batch([n + 1 for n in numbers])).argmax(dim=1).tolist()
    return {n: readable(n + 1, c) for n, c in zip(numbers, classes)}


def wrong_answers_for_every_input(post, threads):
    """Ask a server (through `post(payload) -> response`) about every input,
    `threads` at a time; the answers.Wrong rows, [] when PyTorch, the truth and
    the server all agree."""
    expected = torch_labels()
    assert all(expected[n] == answers.expected_label(n) for n in expected)

    def ask(n):
        response = post({INPUT_KEY: n})
        return response.status_code, response.content

    return answers.ask_all(ask, expected, threads)


def strict_json(raw):
    """The JSON value of a request body as the service must read it (UTF-8
    only: json.loads on bytes would also take UTF-16/32, which the codec
    refuses), or None when it is not one."""
    try:
        return json.loads(bytes(raw).decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def expected_reply(body):
    """The reply a raw JSON request body must get when valid, else None."""
    payload = strict_json(body)
    if not isinstance(payload, dict) or INPUT_KEY not in payload:
        return None
    return expected_for_value(payload[INPUT_KEY])


def expected_for_value(value):
    """The reply for a decoded input value when valid, else None."""
    if type(value) is not int or not MIN_INPUT <= value <= MAX_INPUT:
        return None
    return answers.expected_reply(value)
