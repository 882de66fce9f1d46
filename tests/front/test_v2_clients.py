"""The Open Inference Protocol v2 through the fleet's front door, spoken by the
real third-party clients: tritonclient's HTTP client with binary tensors on and
off and its gRPC client, over TLS with the bearer token (issue 20). The clients
run in their own venv (clients/setup.sh): their pins clash with the project's.
"""

import json
import shutil
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from fizbuz.contract import ROOT
from fizbuz.lifecycle import wait_until

pytestmark = pytest.mark.e2e
CLIENTS_VENV = ROOT / ".venv-clients"
CHECK = Path(__file__).resolve().parent / "v2_clients_check.py"
V2LOAD = ROOT / "clients" / "v2load.py"


@pytest.fixture(scope="session")
def clients_python():
    result = subprocess.run([str(ROOT / "clients/setup.sh")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return str(CLIENTS_VENV / "bin" / "python")


def client_env(fleet):
    """What `fleet.sh env` exports, for this test's fleet."""
    env = dict(os.environ)
    env.update(
        FIZBUZ_URL=f"https://{fleet.address}:{fleet.port}",
        FIZBUZ_GRPC_URL=f"{fleet.address}:{fleet.port}",
        FIZBUZ_TOKEN=fleet.token,
        FIZBUZ_CACERT=fleet.cafile,
    )
    return env


@pytest.fixture(scope="module")
def report(fleet, clients_python):
    fleet.healthy()
    result = subprocess.run(
        [clients_python, str(CHECK)], capture_output=True, text=True, timeout=600, env=client_env(fleet)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["http_binary", "http_json", "grpc"])
def test_every_input_one_at_a_time_and_all_in_one_request(report, kind):
    answers = report[kind]
    assert answers["single_count"] == 1023 and answers["single_wrong"] == 0
    assert answers["batch_wrong"] == 0
    assert answers["logits_shape"] == [1023, 4] and answers["logits_dtype"] == "float32"
    assert answers["argmax_disagrees"] == 0  # the raw logits give the same labels
    assert answers["id"] == "all-1023"  # the request's id is echoed


HTTP_ERRORS = {
    "unknown_model": ("404", "unknown model 'nope'"),
    "unknown_version": ("404", "unknown version '7'"),
    "out_of_range": ("400", "element 2: 2000 is out of range"),
    "negative": ("400", "element 0: -1"),
    "float_datatype": ("400", "datatype 'FP32' is not accepted"),
    "too_many": ("413", "at most 1024 numbers"),
    "unknown_output": ("400", "unknown output 'nope'"),
    "no_token": ("401", "bearer token"),
    "wrong_token": ("401", "bearer token"),
}
GRPC_CODES = {
    "404": "StatusCode.NOT_FOUND",
    "400": "StatusCode.INVALID_ARGUMENT",
    "413": "StatusCode.RESOURCE_EXHAUSTED",
    "401": "StatusCode.UNAUTHENTICATED",
}


@pytest.mark.parametrize("case", sorted(HTTP_ERRORS))
def test_each_error_has_its_status_and_names_what_was_wrong(report, case):
    status, words = HTTP_ERRORS[case]
    assert report["http_errors"][case]["status"] == status
    assert words in report["http_errors"][case]["message"]
    assert report["grpc_errors"][case]["status"] == GRPC_CODES[status]
    assert words in report["grpc_errors"][case]["message"]


@pytest.mark.parametrize("kind", ["http_metadata", "grpc_metadata"])
def test_health_and_metadata(report, kind):
    meta = report[kind]
    assert meta["live"] is True and meta["ready"] is True
    assert meta["model_ready"] is True and meta["model_ready_v1"] is True
    assert meta["server"]["name"] == "fizbuz-serve"
    assert set(meta["server"]["extensions"]) == {"binary_tensor_data", "model_configuration"}
    model = meta["model"]
    assert model["name"] == "fizbuz_package" and model["versions"] == ["1"]
    shapes = {t["name"]: [int(d) for d in t["shape"]] for t in model["inputs"] + model["outputs"]}
    assert shapes == {"input.1": [-1, 1], "next_number": [-1, 1], "logits": [-1, 4]}
    config = meta["config"]["config"] if kind == "grpc_metadata" else meta["config"]
    assert int(config["max_batch_size"]) == 1024
    assert meta["metadata_unknown_model"]["status"] in ("404", "StatusCode.NOT_FOUND")
    assert meta["metadata_no_token"]["status"] in ("401", "StatusCode.UNAUTHENTICATED")


def v2_or_grpc(line):
    return "/v2/" in line or "GRPCInferenceService" in line


class V2Load:
    """clients/v2load.py in the clients venv, read as it runs."""

    def __init__(self, python, env, protocol, concurrency):
        self.stop_file = Path(tempfile.mkdtemp(prefix="v2load-")) / "stop"
        self.process = subprocess.Popen(
            [
                python,
                str(V2LOAD),
                "--protocol",
                protocol,
                "--concurrency",
                str(concurrency),
                "--seconds",
                "300",
                "--stop-file",
                str(self.stop_file),
                "--progress",
                "0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.answered = 0
        self.summary = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            item = json.loads(line)
            if "summary" in item:
                self.summary = item["summary"]
            else:
                self.answered = item["answered"]

    def wait_for_answers(self, count, timeout=120):
        wait_until(
            lambda: self.answered >= count or self.process.poll() is not None,
            timeout,
            f"{count} answers from the v2 load",
        )
        assert self.process.poll() is None, self.process.stderr.read()[-2000:]

    def finish(self):
        self.stop_file.touch()
        try:
            self.process.wait(timeout=120)
        finally:
            self.process.kill()  # a no-op once it ended
            shutil.rmtree(self.stop_file.parent, ignore_errors=True)
        self.reader.join(timeout=10)
        return self.summary


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_kill_9_of_a_worker_under_32_tritonclient_callers(fleet, clients_python, protocol):
    fleet.healthy()
    after = fleet.access_log_size()
    load = V2Load(clients_python, client_env(fleet), protocol, 32)
    try:
        load.wait_for_answers(300)
        # A worker between batches holds nothing, and Python callers leave the
        # workers idle most of the time: kill (at most 12 times) until one kill
        # hit a batch and the access log shows a v2 request retried.
        for _ in range(12):
            fleet.kill_a_batched_worker(fleet.hosts[0])
            load.wait_for_answers(load.answered + 100)
            if fleet.retried_lines(after, where=v2_or_grpc):
                break
        load.wait_for_answers(load.answered + 300)
    finally:
        summary = load.finish()
    assert summary is not None, load.process.stderr.read()[-2000:]
    print(summary)
    not_200 = fleet.access_log_lines(timeout=3, predicate=lambda l: '" 200 ' not in l, after=after)[-20:]
    assert summary["sent"] > 0 and summary["failed"] == 0, (summary["failure_samples"], not_200)
    assert summary["answered"] == summary["sent"]
    assert summary["wrong"] == 0 and summary["ok"] == summary["sent"]
    lines = fleet.retried_lines(after, where=v2_or_grpc)
    assert lines, "no kill hit a batch: nothing was retried"
    for line in lines:  # always on the other host
        first, second = line.split("upstream=")[1].split(" ustatus=")[0].replace(" : ", ", ").split(", ")[:2]
        assert first != second, line


def test_the_readmes_tritonclient_lines_work_as_shown(fleet, clients_python):
    """The docs' "Standard clients" snippet, run as written, prints what it says."""
    text = (ROOT / "docs/clients.md").read_text()
    section = text.split("# Standard clients", 1)[1]
    script = section.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    promised = [
        line[2:] for line in section.split("\nEOF\n", 1)[1].split("```", 1)[0].splitlines() if line.startswith("# ")
    ]
    result = subprocess.run(
        [clients_python, "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(fleet.healthy()),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == promised
