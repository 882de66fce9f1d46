"""The MMS image's HEALTHCHECK: real predictions on the container's own
predictions port (MMS's /ping is 200 even when no worker can serve).

Two ways in, both of which the front door uses:
  - the card's request, one number each: inputs whose answers are Fizz, Buzz,
    FizzBuzz and a number, so a model that serves but answers wrongly is
    unhealthy too;
  - the Open Inference Protocol v2: one ModelInfer call (REST JSON) for the same
    numbers, sent as the front door's door.js sends it (the X-Fizbuz-* headers,
    the raw body as application/octet-stream), answered in the handler's
    envelope (fizbuz_v2.envelope). A handler that cannot speak v2 (protobuf
    missing from the image, fizbuz_v2 absent from the archive) is unhealthy.

Exit 0: healthy; 1: unhealthy."""

import http.client
import json
import sys

import fizbuz_v2 as v2
from fizbuz import answers, settings
from fizbuz.contract import PREDICT_PATH, expected_reply
from fizbuz.http_client import predict, predict_url

# n -> label of n + 1: 2 -> Fizz, 4 -> Buzz, 14 -> FizzBuzz, 6 -> 7.
PROBES = (2, 4, 14, 6)
# What door.js's call to a host carries (serving/front/config.py CALL_HEADERS;
# the names as the handler reads them, fizbuz_service.PROTOCOL_HEADER and friends:
# exact case, which is why this goes through http.client and not urllib, which
# rewrites header names).
V2_HEADERS = {
    "Content-Type": v2.BINARY_TYPE,  # MMS hands the handler the raw bytes
    "X-Fizbuz-Protocol": "v2",  # REST (fizbuz_service.REST)
    "X-Fizbuz-Call": "ModelInfer",
    "X-Fizbuz-Model": v2.MODEL_NAME,
    # No X-Fizbuz-Version: the latest version, as for a URL without /versions/
    # (nginx leaves a header with an empty value out).
}
PROBE_ID = "fizbuz-health"


def v2_request(numbers=PROBES):
    """(body, headers) of a v2 infer call for `numbers`, labels only."""
    document = {
        "id": PROBE_ID,
        "inputs": [{"name": v2.INPUT_NAME, "datatype": "INT64", "shape": [len(numbers), 1], "data": list(numbers)}],
        "outputs": [{"name": v2.LABEL_OUTPUT}],
    }
    return json.dumps(document).encode(), dict(V2_HEADERS)


def open_envelope(reply):
    """(status, content type, payload) of the handler's envelope (fizbuz_v2's
    reader); ValueError when `reply` is not one."""
    status, content_type, _, payload, _, _ = v2.open_envelope(reply)
    return status, content_type, payload  # what follows the payload is the handler's padding for MMS


def v2_labels(payload):
    """The labels of a v2 JSON infer reply to the probe, or ValueError."""
    document = json.loads(payload)
    if document.get("model_name") != v2.MODEL_NAME or document.get("id") != PROBE_ID:
        raise ValueError(f"the reply names model {document.get('model_name')!r}, id {document.get('id')!r}")
    outputs = {output["name"]: output for output in document["outputs"]}
    return outputs[v2.LABEL_OUTPUT]["data"]


def check_v2(port, timeout, numbers=PROBES):
    """None when a v2 infer call gives the right labels, else what went wrong."""
    body, headers = v2_request(numbers)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", PREDICT_PATH, body, headers)
        response = connection.getresponse()
        status, reply = response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return f"v2 ModelInfer: no answer ({error})"
    finally:
        connection.close()
    try:
        inner_status, content_type, payload = open_envelope(reply)
        labels = v2_labels(payload) if inner_status == 200 else None
    except (ValueError, KeyError, TypeError) as error:
        return f"v2 ModelInfer: HTTP {status}, an unreadable reply ({error}): {reply[:120]!r}"
    wanted = [expected_reply(number)[v2.LABEL_OUTPUT] for number in numbers]
    if status != 200 or inner_status != 200 or content_type != v2.JSON_TYPE or labels != wanted:
        return (
            f"v2 ModelInfer: HTTP {status}, envelope {inner_status} {content_type}, labels {labels} "
            f"(expected {wanted}): {payload[:120]!r}"
        )
    return None


def main():
    port = settings.value("inference_port")
    url = predict_url(port)
    timeout = settings.value("health_timeout")
    for number in PROBES:
        status, text = predict(url, number, timeout)
        if not answers.reply_is_right(number, status, text):
            print(f"unhealthy: {number} -> {status} {text.strip()[:120]} from {url}")
            return 1
    problem = check_v2(port, timeout)
    if problem:
        print(f"unhealthy: {problem} from {url}")
        return 1
    print(f"healthy: {len(PROBES)} right answers from {url}, and {len(PROBES)} through v2 (ModelInfer, JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
