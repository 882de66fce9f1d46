"""Load test for the FizBuzNet service, with every answer checked.

Each simulated user posts {"input.1": n} for random n in 0..1022 to
/predictions/fizbuz_package and fails the request unless the reply is
{"next_number": <the true FizzBuzz label of n + 1>}. A light task (1 in 21)
sends bodies the service must refuse and counts any 4xx as a success.
Users send back to back (no wait), so -u is the number of requests in flight.

Web UI (open http://127.0.0.1:8089, start from there):
    .venv/bin/locust -f locustfile.py
Headless, bounded, with CSV and HTML reports:
    .venv/bin/locust -f locustfile.py --headless -u 16 -r 16 -t 1m \\
        --csv run/locust --html run/locust.html
Another server, e.g. the Flask baseline (flask_app/serve.sh) or a test MMS:
    .venv/bin/locust -f locustfile.py --host http://127.0.0.1:8000 ...

The default host is MMS's inference API, http://127.0.0.1:8080. Locust exits
non-zero when any request failed.
"""

import json
import random

from locust import FastHttpUser, constant, task

from fizbuz.answers import expected_label, reply_is_right
from fizbuz.contract import INPUT_KEY, MAX_INPUT, MIN_INPUT, PREDICT_PATH

JSON_HEADERS = {"Content-Type": "application/json"}
# Bodies the service must refuse: (what, body, Content-Type).
BAD_REQUESTS = [
    ("out of range", json.dumps({INPUT_KEY: MAX_INPUT + 1}).encode(), "application/json"),
    ("negative", json.dumps({INPUT_KEY: -1}).encode(), "application/json"),
    ("not JSON", b'{"%s": 14' % INPUT_KEY.encode(), "application/json"),
    ("a string", json.dumps({INPUT_KEY: "14"}).encode(), "application/json"),
    ("missing key", b'{"input": 14}', "application/json"),
    ("empty", b"", "application/json"),
]


class FizBuzUser(FastHttpUser):
    host = "http://127.0.0.1:8080"
    wait_time = constant(0)

    @task(20)
    def predict(self):
        number = random.randint(MIN_INPUT, MAX_INPUT)
        body = json.dumps({INPUT_KEY: number}).encode()
        with self.client.post(
            PREDICT_PATH, data=body, headers=JSON_HEADERS, name="predict", catch_response=True
        ) as response:
            if reply_is_right(number, response.status_code, response.content or b""):
                response.success()
            else:
                text = (response.content or b"")[:120].decode("utf-8", "replace").strip()
                response.failure(
                    f"n={number}: expected 200 with {expected_label(number)}, got {response.status_code} {text}"
                )

    @task(1)
    def bad_request(self):
        what, body, content_type = random.choice(BAD_REQUESTS)
        with self.client.post(
            PREDICT_PATH, data=body, headers={"Content-Type": content_type}, name="bad request", catch_response=True
        ) as response:
            if 400 <= response.status_code < 500:
                response.success()
            else:
                response.failure(f"{what}: expected a 4xx, got {response.status_code}")
