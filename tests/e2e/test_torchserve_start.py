"""The TorchServe that `fizbuz bench torchserve` measures MMS against, really started:
FizBuzNet packed by torch-model-archiver, served by TorchServe 0.12 from its own venv with
the bench's config (MMS's frontend tuning); every input answered right, bad bodies refused with a 400 JSON error,
no line written per request, and nothing left running after its stop. (The bench's timed
run itself is `fizbuz bench torchserve`; this is its set-up, checked.)"""

import subprocess

import psutil
import pytest

from bench import torchserve
from fizbuz import answers
from fizbuz.contract import MAX_INPUT, MIN_INPUT
from fizbuz.http_client import predict

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the venv, when provisioning did not make it


@pytest.fixture(scope="session")
def torchserve_venv():
    result = subprocess.run([str(torchserve.SETUP_SCRIPT)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return torchserve.ts_venv()


def line_counts(folder):
    return {path.name: len(path.read_text(errors="replace").splitlines()) for path in folder.iterdir()}


def test_the_bench_torchserve_answers_everything_and_stops_clean(torchserve_venv, tmp_path):
    # One of the bench's two TorchServes: they differ only in three frontend settings
    # (tests/unit/test_torchserve_bench.py), and each start costs half a minute here.
    frontend = "torchserve"
    store = torchserve.stage_archive(tmp_path, torchserve_venv)
    server = torchserve.TorchServe(tmp_path / "ts", torchserve_venv, store, *torchserve.TS_FRONTENDS[frontend])
    pids = []
    try:
        server.start()
        groups = server.processes()
        pids = [process.pid for group in groups for process in group]
        assert len(groups[1]) == torchserve.WORKERS
        before = line_counts(server.logs)
        numbers = range(MIN_INPUT, MAX_INPUT + 1)
        wrong = answers.ask_all(lambda n: predict(server.url, n, 10), numbers, threads=16)
        assert not wrong, answers.summary(wrong, len(numbers))
        torchserve.check_errors(server.url, frontend)
        # Quiet: no access log or metric files, and 1023 requests (dozens of batches) wrote no line.
        assert line_counts(server.logs) == before
        assert not {"access_log.log", "model_metrics.log", "ts_metrics.log"} & set(before)
    finally:
        server.stop()
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
