"""The handler's side, without a server: what a worker writes to its
multiprocess files, folding a dead worker's files, and the opt-in log lines."""

import subprocess
import sys

import pytest

import fizbuz_metrics
from fizbuz.handler_harness import batch_context, load_context, load_service, raw_request
from serving.mms.metrics.multiproc import FilesCollector, prepare
from serving.metrics.scrape import Samples

# A worker in miniature: MMS's own objects around the real handler, in a
# process of its own (multiprocess mode is chosen when prometheus_client is imported).
WORKER = """
import sys
import time
from fizbuz.handler_harness import batch_context, load_context, load_service, raw_request
model_dir = sys.argv[1]
service = load_service(model_dir, batch_size=8)
assert service.metrics.enabled
handling = 0.0  # seconds inside handle(), as this process saw them
for bodies in ([{"input.1": 1}, {"input.1": 2}, {"input.1": 3}, b"nope"], [{"input.1": 4}]):
    context = batch_context(load_context(model_dir, 8), len(bodies))
    began = time.perf_counter()
    service.handle([raw_request(body) for body in bodies], context)
    handling += time.perf_counter() - began
print(handling)
"""


def collected(folder):
    samples = {}
    for metric in FilesCollector(folder).collect():
        for sample in metric.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Samples(samples)


def run_worker(unpacked_model, folder):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(unpacked_model)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])  # the seconds the worker spent inside handle()


def test_a_worker_counts_requests_batches_and_stages_in_its_own_files(unpacked_model, tmp_path):
    folder = prepare(tmp_path / "prometheus")
    handling = run_worker(unpacked_model, folder)
    samples = collected(folder)
    assert samples.total("fizbuz_requests_total", status="2xx") == 4
    assert samples.total("fizbuz_requests_total", status="4xx") == 1
    assert samples.total("fizbuz_requests_total", status="5xx") == 0
    assert samples.total("fizbuz_batch_size_count") == 2
    assert samples.total("fizbuz_batch_size_sum") == 5
    assert samples.total("fizbuz_batch_size_bucket", le="1.0") == 1
    assert samples.total("fizbuz_handler_seconds_count") == 2
    for stage in fizbuz_metrics.STAGES:
        assert samples.total("fizbuz_handler_stage_seconds_count", stage=stage) == 2
    # Recorded in seconds: within what the worker itself spent inside handle() (a figure in
    # milliseconds would be a thousand times over), and covering the three stages.
    total = samples.total("fizbuz_handler_seconds_sum")
    stages = sum(samples.total("fizbuz_handler_stage_seconds_sum", stage=stage) for stage in fizbuz_metrics.STAGES)
    assert 0 < stages <= total <= handling, (stages, total, handling)


def test_folding_dead_workers_keeps_every_total_and_bounds_the_files(unpacked_model, tmp_path):
    folder = prepare(tmp_path / "prometheus")
    for _ in range(3):  # three workers, one after another, each gone when done
        run_worker(unpacked_model, folder)
    before = collected(folder)
    assert len(list(folder.glob("*.db"))) == 6

    assert len(FilesCollector(folder).fold_dead()) == 3
    assert sorted(p.name for p in folder.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert collected(folder) == before
    assert before.total("fizbuz_requests_total", status="2xx") == 12

    run_worker(unpacked_model, folder)  # a fourth adds to the archive
    FilesCollector(folder).fold_dead()
    assert collected(folder).total("fizbuz_batch_size_sum") == 20
    assert len(list(folder.glob("*.db"))) == 2


def test_without_a_multiprocess_folder_the_handler_records_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv(fizbuz_metrics.MULTIPROC_ENV, raising=False)
    assert not fizbuz_metrics.for_worker("m").enabled
    # A folder that is gone: serving goes on without metrics (and says so).
    missing = {fizbuz_metrics.MULTIPROC_ENV: str(tmp_path / "gone")}
    assert not fizbuz_metrics.for_worker("m", environ=missing).enabled


@pytest.mark.parametrize("setting, expected", [("1", True), ("0", False), (None, True)])
def test_per_batch_log_lines_are_opt_in(unpacked_model, monkeypatch, setting, expected):
    if setting is None:
        monkeypatch.delenv(fizbuz_metrics.LOG_LINES_ENV, raising=False)  # a plain MMS: as before
    else:
        monkeypatch.setenv(fizbuz_metrics.LOG_LINES_ENV, setting)
    service = load_service(unpacked_model, batch_size=4)
    context = batch_context(load_context(unpacked_model, 4), 2)
    service.handle([raw_request({"input.1": 1}), raw_request({"input.1": 2})], context)
    names = {metric.name for metric in context.metrics.store}
    stage_lines = {"PreprocessTime", "InferenceTime", "PostprocessTime", "BatchSize"}
    assert (stage_lines <= names) is expected
    assert (names & stage_lines == set()) is (not expected)
