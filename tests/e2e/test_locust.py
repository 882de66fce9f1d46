"""The real locustfile, headless and bounded, against a real MMS and against a
server that answers wrongly (to show its check can fail)."""

import csv
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fizbuz.lifecycle import free_port
from fizbuz.contract import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The locust of the venv running the tests.
LOCUST = Path(sys.executable).parent / "locust"


def run_locust(host, folder, seconds, users):
    command = [
        str(LOCUST),
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--csv",
        str(folder / "run"),
        "--host",
        host,
        "--only-summary",
    ]
    result = subprocess.run(
        command,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    with open(folder / "run_stats.csv", newline="") as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    return result, stats


def test_headless_run_against_mms_has_no_failures(mms, tmp_path):
    host = f"http://127.0.0.1:{mms.inference_port}"
    result, stats = run_locust(host, tmp_path, seconds=10, users=8)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    total = stats["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    # Both tasks ran: checked predictions and refused bad bodies.
    assert int(stats["predict"]["Request Count"]) > 0
    assert int(stats["bad request"]["Request Count"]) > 0


class WrongAnswers(http.server.BaseHTTPRequestHandler):
    """Answers FizzBuzz to everything, bad bodies included."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"next_number": "FizzBuzz"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_wrong_answers_are_counted_as_failures(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), WrongAnswers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result, stats = run_locust(f"http://127.0.0.1:{server.server_port}", tmp_path, seconds=3, users=2)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode != 0
    predict = stats["predict"]
    # 1 in 15 numbers really is followed by FizzBuzz; every other answer is wrong.
    assert 0 < int(predict["Failure Count"]) < int(predict["Request Count"])
    with open(tmp_path / "run_failures.csv", newline="") as f:
        errors = [row["Error"] for row in csv.DictReader(f) if row["Name"] == "predict"]
    assert errors and all("expected 200 with" in e and 'got 200 {"next_number": "FizzBuzz"}' in e for e in errors)
    refused = stats["bad request"]
    assert 0 < int(refused["Failure Count"]) == int(refused["Request Count"])
