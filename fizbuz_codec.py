"""The one source of truth for FizzBuzz numbers, bits and labels, and for
what a request must look like (body decoding, validation, error replies).

Stdlib only, so the serving archive, the Flask app, training and the tests
all share exactly these rules. The service answers for the *next* number:
a request carrying n is answered with the label of n + 1.
"""

import json

MODEL_NAME = "fizbuz_package"  # the registered name clients address
BITS = 10
MIN_INPUT = 0
# n + 1 must fit in BITS bits, so the largest number we answer for is 1023.
MAX_INPUT = (1 << BITS) - 2
INPUT_KEY = "input.1"
OUTPUT_KEY = "next_number"
ERROR_STATUS = 400
CLASS_LABELS = ("number", "Fizz", "Buzz", "FizzBuzz")
# A known answer, for smoke checks and readiness probes (n=14 -> label of 15).
SMOKE_INPUT, SMOKE_ANSWER = 14, "FizzBuzz"


def is_decimal(text):
    """True when `text` is ASCII digits only: str.isdigit() also takes '²' (which
    int() refuses) and other scripts' digits (which int() reads), neither of
    which a client's header or a log line of ours may carry."""
    return text.isascii() and text.isdigit()


def encode(number):
    """Return `number` as a list of BITS ints, most significant bit first."""
    if not 0 <= number < (1 << BITS):
        raise ValueError(f"{number} does not fit in {BITS} bits")
    return [(number >> shift) & 1 for shift in range(BITS - 1, -1, -1)]


def true_class(number):
    """Class index of the real FizzBuzz answer for `number`."""
    if number % 15 == 0:
        return 3
    if number % 5 == 0:
        return 2
    if number % 3 == 0:
        return 1
    return 0


def readable(number, class_index):
    """The label a client sees for `number` predicted as `class_index`."""
    if class_index == 0:
        return str(number)
    return CLASS_LABELS[class_index]


def true_label(number):
    return readable(number, true_class(number))


class InvalidInput(ValueError):
    """A request value the service refuses; the message is shown to the client."""


EMPTY_BODY = f'empty body: send a JSON object like {{"{INPUT_KEY}": 14}}'


def decode_body(raw):
    """Parse a request body into JSON values, or raise InvalidInput.

    `raw` may be bytes (a raw HTTP body), text, or something already decoded
    (MMS decodes JSON itself when decode_input_request is on), which is
    returned as it is.
    """
    if isinstance(raw, (bytes, bytearray)):
        if not raw.strip():
            raise InvalidInput(EMPTY_BODY)
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(f"body is not UTF-8 text ({error.reason} at byte {error.start})")
    if isinstance(raw, str):
        if not raw.strip():
            raise InvalidInput(EMPTY_BODY)
        try:
            return json.loads(raw)
        except RecursionError:
            raise InvalidInput("body is not valid JSON: nested too deeply")
        except ValueError as error:
            # JSONDecodeError, and Python's limit on very long integer literals.
            raise InvalidInput(f"body is not valid JSON: {error}")
    return raw


def payload_from_fields(fields):
    """The payload of a request sent as form or query fields (?input.1=14, a
    multipart field) instead of a JSON body; each value is JSON text."""
    if INPUT_KEY in fields:
        return {INPUT_KEY: decode_body(fields[INPUT_KEY])}
    if not fields:
        # What a JSON text sent as a form (`curl -d` without a Content-Type)
        # leaves after form decoding: nothing.
        raise InvalidInput(
            f'no JSON body received: send {{"{INPUT_KEY}": 14}} with the header Content-Type: application/json'
        )
    raise InvalidInput(f'send a JSON body like {{"{INPUT_KEY}": 14}}')


def error_reply(message, status=ERROR_STATUS):
    """The JSON object a refused request gets, with its HTTP status (ERROR_STATUS unless told)."""
    return {"error": message, "code": status}


def validate_input(payload):
    """Check a decoded JSON request and return the integer n it asks about.

    Accepts {"input.1": n} with n an integer in MIN_INPUT..MAX_INPUT.
    Integral floats (14.0) are refused too: the contract is an integer.
    """
    if not isinstance(payload, dict):
        raise InvalidInput(f'body must be a JSON object like {{"{INPUT_KEY}": 14}}, got {type(payload).__name__}')
    if INPUT_KEY not in payload:
        raise InvalidInput(f'missing key "{INPUT_KEY}"')
    value = payload[INPUT_KEY]
    # bool is a subclass of int in Python; true/false are not numbers here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f'"{INPUT_KEY}" must be an integer, got {_describe(value)}')
    if not MIN_INPUT <= value <= MAX_INPUT:
        raise InvalidInput(f'"{INPUT_KEY}" must be between {MIN_INPUT} and {MAX_INPUT}, got {_describe(value)}')
    return value


def _describe(value):
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"
