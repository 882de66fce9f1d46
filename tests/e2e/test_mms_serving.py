"""End to end: the real MMS, the real archive, real HTTP."""

import concurrent.futures
import json
import re
import subprocess

import psutil
import pytest
import requests

from fizbuz import answers
from fizbuz import settings as fizbuz_settings
from fizbuz.contract import SINGLE_MODEL_NAME, SINGLE_PREDICT_PATH
from fizbuz.http_client import predict_url
from fizbuz.lifecycle import wait_until
from serving.mms import management
from serving.mms.metrics import control as metrics_control
from serving.metrics.scrape import scrape
from fizbuz_codec import MAX_INPUT
from request_cases import BAD_BODIES, BAD_BODY_IDS, wrong_answers_for_every_input

pytestmark = pytest.mark.e2e


def test_seed_curl_answers_fizzbuzz(mms):
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-X",
            "POST",
            mms.url,
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"input.1": 14}',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(result.stdout) == {"next_number": "FizzBuzz"}


def test_every_input_matches_pytorch_and_the_truth(mms):
    assert wrong_answers_for_every_input(mms.post, threads=16) == []


@pytest.mark.parametrize("name, body, content_type, fragment", BAD_BODIES, ids=BAD_BODY_IDS)
def test_bad_input_gets_400_and_the_workers_survive(mms, name, body, content_type, fragment):
    pids_before = mms.worker_pids()
    response = mms.post(body, content_type)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    # Same workers, all READY, and the next good request is answered right.
    assert len(mms.ready_workers()) == 2
    assert mms.worker_pids() == pids_before
    assert mms.post({"input.1": 14}).json() == {"next_number": "FizzBuzz"}


def test_body_over_max_request_size_is_refused_without_harm(mms):
    pids_before = mms.worker_pids()
    response = mms.post(b'{"input.1": 14, "pad": "' + b"x" * 200_000 + b'"}')
    assert response.status_code == 413
    assert mms.worker_pids() == pids_before
    assert mms.post({"input.1": 4}).json() == {"next_number": "Buzz"}


def test_multipart_form_field_works(mms):
    response = requests.post(mms.url, files={"input.1": (None, "29")}, timeout=10)
    assert response.json() == {"next_number": "FizzBuzz"}


def test_wrong_method_and_unknown_model_are_4xx(mms):
    assert requests.get(mms.url, timeout=10).status_code in (400, 405)
    unknown = requests.post(mms.url.replace("fizbuz_package", "nope"), data=b"{}", timeout=10)
    assert unknown.status_code == 404


def metrics_written_after(log, offset, pattern, timeout=30):
    """The matches of `pattern` in what MMS appended to `log` after `offset`,
    polled until some appear: MMS writes its metric logs asynchronously."""

    def found():
        with open(log, "rb") as text:
            text.seek(offset)
            return re.findall(pattern, text.read().decode(errors="replace"))

    return wait_until(found, timeout, f"{pattern!r} in {log}")


def log_size(log):
    return log.stat().st_size if log.exists() else 0


def test_the_server_warmed_up_on_every_input_before_it_said_ready(mms):
    passes = fizbuz_settings.default("mms_warmup")
    said = mms.start_output.stdout + mms.start_output.stderr
    done = re.search(r"warm-up done: (\d+) answers right", said)
    # Every pass, or (a very busy machine) at least the first whole and the budget's line.
    answered = int(done.group(1)) if done else 0
    whole = answered == passes * (MAX_INPUT + 1)
    assert whole or (answered % (MAX_INPUT + 1) == 0 and answered >= MAX_INPUT + 1 and "warm-up stopped after" in said)
    assert passes >= 1 and said.index(f"warming up: {passes * (MAX_INPUT + 1)} requests") < done.start()
    assert done.start() < said.index("is serving with")


def test_concurrent_requests_are_batched(mms):
    before = scrape(mms.metrics_url)
    numbers = [n % (MAX_INPUT + 1) for n in range(2000)]

    def ask(n):
        response = mms.post({"input.1": n})
        return response.status_code, response.content

    assert answers.ask_all(ask, numbers, threads=32) == []
    # 2000 requests from 32 threads come in batches: the handler counted every
    # request once, in fewer batches than requests, some of them above 1. (It
    # records before it returns, so the counts are complete once all are answered.)
    after = scrape(mms.metrics_url)

    def grew(name, **labels):
        return after.total(name, **labels) - before.total(name, **labels)

    assert grew("fizbuz_batch_size_sum") == len(numbers)
    assert grew("fizbuz_requests_total", status="2xx") == len(numbers)
    batches = grew("fizbuz_batch_size_count")
    assert batches - grew("fizbuz_batch_size_bucket", le="1.0") > 0
    assert batches < len(numbers)


def test_workers_run_the_fast_protocol_and_write_no_metric_lines(mms):
    # serving/mms/fast_worker.py, applied in every worker by serving/mms/worker_boot: the
    # buffered decoder, and no per-batch [METRICS] lines (Prometheus has them) unless
    # MODEL_METRICS_LOG=1.
    applied = "fizbuz fast worker: buffered protocol, no per-batch metric lines (MMS 1.0.8)"
    log = mms.logs / "model_metrics.log"
    offset = log_size(log)
    numbers = list(range(40))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: mms.post({"input.1": n}).json(), numbers))
    assert replies == [answers.expected_reply(n) for n in numbers]
    mms_log = (mms.logs / "mms_log.log").read_text()
    assert mms_log.count(applied) >= len(mms.worker_pids()) >= 1  # a restarted worker says it again
    assert "Error in sitecustomize" not in mms_log
    # The frontend writes a worker's lines before the next batch's answer: one more
    # answered request means every earlier batch's lines would be in the log by now.
    assert mms.post({"input.1": 2}).json() == {"next_number": "Fizz"}
    assert log_size(log) == offset


@pytest.mark.slow  # a server of its own, with workers: the not-slow tier has the shared one
def test_without_prometheus_the_handler_stages_are_in_the_metrics_log(fresh_mms):
    # METRICS=0: no exporter, no multiprocess files, and the handler's per-batch
    # lines in model_metrics.log as before the exporter existed.
    server = fresh_mms(workers=1, metrics=0)
    assert metrics_control.pid_file(server.run).process() is None
    assert not metrics_control.multiproc_dir(server.run).exists()
    log = server.logs / "model_metrics.log"
    offset = log_size(log)
    assert server.post({"input.1": 2}).json() == {"next_number": "Fizz"}
    for stage in ("PreprocessTime", "InferenceTime", "PostprocessTime", "PredictionTime"):
        metrics_written_after(log, offset, stage + r"\.Milliseconds:[\d.]+")
    metrics_written_after(log, offset, r"BatchSize\.Count:1(?:\.0)?\|")


def test_start_output_and_rerun_is_harmless(mms):
    result = mms.script("start_mms.sh")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert f"curl -X POST http://127.0.0.1:{mms.inference_port}/predictions/fizbuz_package" in result.stdout
    assert str(mms.logs) in result.stdout
    assert mms.run.pid_file.read() == mms.pid


def test_both_apis_listen_on_loopback_only(mms):
    process = psutil.Process(mms.pid)
    # Java listens on an IPv6 socket; 127.0.0.1 shows as the IPv4-mapped ::ffff:127.0.0.1.
    listening = {
        (c.laddr.ip.removeprefix("::ffff:"), c.laddr.port)
        for c in process.net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", mms.inference_port), ("127.0.0.1", mms.management_port)}


@pytest.mark.slow  # a server of its own, with workers: the not-slow tier has the shared one
def test_scale_one_three_one(fresh_mms):
    server = fresh_mms(workers=1)
    for count in (1, 3, 1):
        result = server.script("scale_workers.sh", str(count))
        assert result.returncode == 0, result.stderr
        assert len(re.findall(r"^\d+\s+READY", result.stdout, re.M)) == count
        workers = server.describe()["workers"]
        assert len(workers) == count and all(w["status"] == "READY" for w in workers)
        assert server.post({"input.1": 29}).json() == {"next_number": "FizzBuzz"}


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["0"], "1 <= MIN <= MAX"),
        (["x"], "not a whole number"),
        (["3", "2"], "1 <= MIN <= MAX"),
        (["99"], "1 <= MIN <= MAX"),
    ],
)
def test_scale_rejects_bad_counts(mms, args, fragment):
    result = mms.script("scale_workers.sh", *args)
    assert result.returncode != 0
    assert fragment in result.stderr
    assert len(mms.ready_workers()) == 2


def test_scale_says_when_no_server_is_up(fresh_mms):
    server = fresh_mms(start=False)
    result = server.script("scale_workers.sh", "2")
    assert result.returncode == 1
    assert "start it with ./start_mms.sh" in result.stderr


def test_start_refuses_a_taken_port(fresh_mms):
    import socket

    server = fresh_mms(start=False)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.inference_port))
        squatter.listen()
        result = server.script("start_mms.sh")
    assert result.returncode == 1
    assert f"port {server.inference_port}" in result.stderr and "already in use" in result.stderr
    assert not server.run.pid_file.path.exists()


@pytest.mark.slow  # a server of its own, with workers: the not-slow tier has the shared one
def test_stop_leaves_no_process_and_no_pid_file(fresh_mms):
    server = fresh_mms(workers=2)
    family = [psutil.Process(server.pid)] + psutil.Process(server.pid).children(recursive=True)
    assert len(family) >= 3
    result = server.script("start_mms.sh", "stop")
    assert result.returncode == 0, result.stderr
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    assert not server.run.pid_file.path.exists()
    assert "no MMS is running" in server.script("start_mms.sh", "stop").stdout


@pytest.mark.slow  # a server of its own, with workers: the not-slow tier has the shared one
def test_single_workers_registers_batch_1_beside_the_batched_model(fresh_mms):
    """A host for the adaptive front door: SINGLE_WORKERS=N registers the archive
    once more as fizbuz_package_single (batch 1, no delay); scale_workers.sh keeps
    scaling the batched model, SCALE_SINGLE=1 the batch-1 one."""
    server = fresh_mms(workers=2, single_workers=1)
    single = management.describe_model(server.management_port, model=SINGLE_MODEL_NAME)
    assert (single["batchSize"], single["maxBatchDelay"], len(management.ready_workers(single))) == (1, 0, 1)
    single_url = predict_url(server.inference_port, path=SINGLE_PREDICT_PATH)

    def post_single(payload):
        return server.session.post(
            single_url, data=json.dumps(payload), timeout=30, headers={"Content-Type": "application/json"}
        )

    assert wrong_answers_for_every_input(post_single, threads=8) == []
    assert server.post({"input.1": 14}).json() == {"next_number": "FizzBuzz"}
    status = server.script("start_mms.sh", "status")
    assert status.returncode == 0, status.stderr
    assert "model fizbuz_package: batch_size=16" in status.stdout
    assert "model fizbuz_package_single: batch_size=1 max_batch_delay=0 ms" in status.stdout

    server.env = dict(server.env, SCALE_SINGLE="1")
    result = server.script("scale_workers.sh", "2")
    assert result.returncode == 0, result.stderr
    single = management.describe_model(server.management_port, model=SINGLE_MODEL_NAME)
    assert len(management.ready_workers(single)) == 2 and len(server.ready_workers()) == 2
    server.env = dict(server.env, SCALE_SINGLE="0")
    result = server.script("scale_workers.sh", "1")
    assert result.returncode == 0, result.stderr
    assert len(server.ready_workers()) == 1
    assert (
        len(management.ready_workers(management.describe_model(server.management_port, model=SINGLE_MODEL_NAME))) == 2
    )
