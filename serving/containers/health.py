"""The MMS image's HEALTHCHECK: real predictions on the container's own
predictions port (MMS's /ping is 200 even when no worker can serve). Inputs
whose answers are Fizz, Buzz, FizzBuzz and a number, so a model that serves
but answers wrongly is unhealthy too. Exit 0: healthy; 1: unhealthy."""

import json
import os
import sys

from fizbuz.contract import expected_reply
from fizbuz.http_client import predict, predict_url

# n -> label of n + 1: 2 -> Fizz, 4 -> Buzz, 14 -> FizzBuzz, 6 -> 7.
PROBES = (2, 4, 14, 6)


def main():
    url = predict_url(int(os.environ.get("INFERENCE_PORT", "8080")))
    timeout = float(os.environ.get("HEALTH_TIMEOUT", "4"))
    for number in PROBES:
        status, text = predict(url, number, timeout)
        try:
            right = status == 200 and json.loads(text) == expected_reply(number)
        except ValueError:
            right = False
        if not right:
            print(f"unhealthy: {number} -> {status} {text.strip()[:120]} from {url}")
            return 1
    print(f"healthy: {len(PROBES)} right answers from {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
