"""bench/torchserve.py's pieces without a server: the TorchServe handler answers every
input right in-process (our weights, torch from the serving venv) and refuses bad requests
with its own 400 beside right neighbours; the config.properties the bench writes; the quiet
log configuration; the arguments and -h of the bench and of its setup script. The bench's
run itself (two servers, wrk) is `fizbuz bench torchserve`."""

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from bench import torchserve
from fizbuz import cli
from fizbuz.contract import MAX_INPUT, MIN_INPUT, MODEL_NAME, ROOT, WEIGHTS, expected_reply


def load_handler_module():
    """The handler as TorchServe imports it: a module of its own, not part of bench."""
    spec = importlib.util.spec_from_file_location("fizbuz_ts_handler", torchserve.HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeContext:
    """What the handler reads of TorchServe's Context, and the statuses it sets."""

    def __init__(self, model_dir: Path, weights: str):
        self.system_properties = {"model_dir": str(model_dir), "batch_size": torchserve.BATCH_SIZE}
        self.manifest = {"model": {"modelName": MODEL_NAME, "serializedFile": weights}}
        self.statuses = {}

    def set_response_status(self, code, phrase, idx):
        self.statuses[idx] = (code, phrase)


@pytest.fixture(scope="module")
def module():
    return load_handler_module()


@pytest.fixture(scope="module")
def handler(module):
    loaded = module.FizBuzHandler()
    loaded.initialize(FakeContext(WEIGHTS.parent, WEIGHTS.name))
    return loaded


def body(number):
    return json.dumps({"input.1": number}).encode()


def test_every_input_is_answered_right_in_batches_of_the_bench(handler):
    numbers = list(range(MIN_INPUT, MAX_INPUT + 1))
    context = FakeContext(WEIGHTS.parent, WEIGHTS.name)
    replies = []
    for start in range(0, len(numbers), torchserve.BATCH_SIZE):
        batch = [{"body": body(n)} for n in numbers[start : start + torchserve.BATCH_SIZE]]
        replies += handler.handle(batch, context)
    assert [json.loads(reply) for reply in replies] == [expected_reply(n) for n in numbers]
    assert context.statuses == {}


def test_bad_requests_get_their_own_400_beside_right_neighbours(handler):
    context = FakeContext(WEIGHTS.parent, WEIGHTS.name)
    batch = [
        {"body": body(14)},
        {"body": b'{"input.1": 1023}'},
        {"body": b"not json"},
        {"body": b""},
        {"body": b'{"input.1": true}'},
        {"body": b"\xff\xfe"},
        {"body": {"input.1": 2}},  # a body TorchServe decoded itself
        {"input.1": b"5"},  # a form field
        {"other": b"1"},
        {"body": body(1022)},
    ]
    replies = [json.loads(reply) for reply in handler.handle(batch, context)]
    right = {0: 14, 6: 2, 7: 5, 9: 1022}
    for idx, reply in enumerate(replies):
        if idx in right:
            assert reply == expected_reply(right[idx]) and idx not in context.statuses
        else:
            assert context.statuses[idx] == (400, "Bad Request")
            assert reply["code"] == 400 and reply["error"], reply
    assert len(context.statuses) == len(batch) - len(right)


def test_a_failing_batch_is_answered_500_for_each_request(module, monkeypatch):
    broken = module.FizBuzHandler()
    context = FakeContext(WEIGHTS.parent, WEIGHTS.name)
    monkeypatch.setattr(module, "_handler", broken)
    assert module.handle(None, context) is None and broken.initialized

    def fail(numbers):
        raise RuntimeError("boom")

    monkeypatch.setattr(broken, "labels", fail)
    replies = module.handle([{"body": body(1)}, {"body": body(2)}], context)
    assert [json.loads(reply)["code"] for reply in replies] == [500, 500]
    assert context.statuses == {0: (500, "Internal Server Error"), 1: (500, "Internal Server Error")}


def settings_of(text):
    return dict(line.split("=", 1) for line in text.splitlines())


def test_config_has_the_shipped_batching_on_loopback(tmp_path):
    settings = settings_of(torchserve.config_text((1001, 1002, 1003, 1004, 1005), tmp_path))
    assert settings["inference_address"] == "http://127.0.0.1:1001"
    assert settings["management_address"] == "http://127.0.0.1:1002"
    assert settings["metrics_address"] == "http://127.0.0.1:1003"
    assert (settings["grpc_inference_address"], settings["grpc_inference_port"]) == ("127.0.0.1", "1004")
    assert (settings["grpc_management_address"], settings["grpc_management_port"]) == ("127.0.0.1", "1005")
    assert settings["model_store"] == str(tmp_path)
    model = json.loads(settings["models"])[MODEL_NAME][torchserve.MODEL_VERSION]
    assert (model["batchSize"], model["maxBatchDelay"]) == (16, 1)
    assert model["minWorkers"] == model["maxWorkers"] == 2
    assert settings["load_models"] == model["marName"] == f"{MODEL_NAME}.mar"
    for key, value in {
        "async_logging": "true",
        "decode_input_request": "false",
        "metrics_mode": "prometheus",
        "disable_system_metrics": "true",
        "number_of_netty_threads": "1",
        "netty_client_threads": "1",
        "vmargs": "-XX:+UseSerialGC",
    }.items():
        assert settings[key] == value, key


def test_netty_threads_zero_leaves_nettys_own(tmp_path):
    settings = settings_of(torchserve.config_text((1, 2, 3, 4, 5), tmp_path, netty_threads=0, jvm_options=""))
    assert not {"number_of_netty_threads", "netty_client_threads", "vmargs"} & set(settings)


def test_log_config_writes_no_line_per_request():
    root = ElementTree.parse(torchserve.LOG_CONFIG).getroot()
    levels = {logger.get("name"): logger.get("level") for logger in root.iter("Logger")}
    assert levels["ACCESS_LOG"] == levels["MODEL_METRICS"] == levels["TS_METRICS"] == "off"
    assert levels["MODEL_LOG"] == levels["org.pytorch.serve"] == "warn"
    assert root.find("Loggers/Root").get("level") == "warn"


def test_the_archive_holds_what_the_handler_imports():
    assert torchserve.HANDLER.is_file() and torchserve.CODEC.is_file() and torchserve.MODEL_CLASS.is_file()
    text = torchserve.HANDLER.read_text()
    assert "import fizbuz_codec" in text and "from fizbuz.model import FizBuzNet" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--rounds", "0"],
        ["--duration", "0"],
        ["--connections", "0"],
        ["--torchserve", "nginx"],
        ["--torchserve", "torchserve,torchserve"],
    ],
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        torchserve.parse_args(argv)
    assert stop.value.code == 2


def test_help_of_the_bench_and_its_setup():
    bench = subprocess.run([sys.executable, "-m", "bench.torchserve", "-h"], capture_output=True, text=True, cwd=ROOT)
    assert bench.returncode == 0 and "TorchServe" in bench.stdout and "--torchserve" in bench.stdout
    setup = subprocess.run([str(torchserve.SETUP_SCRIPT), "-h"], capture_output=True, text=True)
    assert setup.returncode == 0 and "torchserve 0.12.0" in setup.stdout
    refused = subprocess.run([str(torchserve.SETUP_SCRIPT), "--bogus"], capture_output=True, text=True)
    assert refused.returncode == 2


def test_requirements_pin_every_package():
    lines = [line for line in (ROOT / "bench" / "torchserve" / "requirements.txt").read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all("==" in pin for pin in pins)
    assert {"torchserve==0.12.0", "torch-model-archiver==0.12.0", "torch==2.13.0"} <= set(pins)


def test_the_bench_is_a_fizbuz_bench():
    assert cli.BENCHES["torchserve"].module == "bench.torchserve"


def run(server, round_number, per_second, connections=64):
    return torchserve.Run(server, connections, round_number, per_second, 1.0, 1000, 10.0, 20.0, 30.0)


def test_ratios_pair_rounds_and_the_best_torchserve_is_the_faster():
    runs = [
        run("mms", 1, 300),
        run("torchserve", 1, 100),
        run("torchserve-own", 1, 150),
        run("mms", 2, 200),
        run("torchserve", 2, 200),
        run("torchserve-own", 2, 100),
        run("mms", 1, 9, connections=16),
        run("torchserve", 1, 1, connections=16),
        run("torchserve-own", 1, 3, connections=16),
    ]
    assert torchserve.paired(runs, 64, "per_second", "torchserve") == [3.0, 1.0]
    assert torchserve.paired(runs, 64, "per_second", "torchserve-own") == [2.0, 2.0]
    assert torchserve.best_torchserve(runs, 64, ["torchserve", "torchserve-own"]) == "torchserve"  # 150 vs 125
    assert torchserve.best_torchserve(runs, 16, ["torchserve", "torchserve-own"]) == "torchserve-own"


def test_both_frontend_configurations_differ_only_in_netty_and_the_jvm(tmp_path):
    tuned, own = (
        settings_of(torchserve.config_text((1, 2, 3, 4, 5), tmp_path, *torchserve.TS_FRONTENDS[name]))
        for name in ("torchserve", "torchserve-own")
    )
    assert {key for key in tuned if tuned.get(key) != own.get(key)} == {
        "number_of_netty_threads",
        "netty_client_threads",
        "vmargs",
    }
