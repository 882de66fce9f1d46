"""The load generator's CLI against a real (private, throw-away) MMS: every
answer of a short run checked, and right."""

import json
import subprocess
import sys

import pytest

from fizbuz.contract import ROOT
from serving.mms.private import PrivateMms

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_loadgen_cli_finds_every_answer_of_a_real_mms_right(model_store):
    with PrivateMms(model_store=model_store) as server:
        result = subprocess.run(
            [sys.executable, "-m", "loadtest.loadgen", "--url", server.url, "-c", "8", "-n", "2046"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == report["answered"] == 2046
    assert report["statuses"] == {"200": 2046}
    assert report["wrong_answers"] == 0 and report["transport_errors"] == {}
