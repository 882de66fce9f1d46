"""The container room's parts that need no Docker engine: the command line's
errors, the MMS image's build context (the app runs without torch), the front
door's rendered config."""

import re
import subprocess
import sys

import pytest

from fizbuz.errors import SettingError

from fizbuz.contract import MAR_FILE_NAME, PREDICT_PATH, ROOT, expected_reply
from fizbuz.handler_harness import batch_context, load_service, raw_request
from serving.containers import health, images
from serving.containers.stack import Options, Stack, front_settings
from serving.front import config

SCRIPT = ROOT / "serving/containers/containers.sh"


def run(*args, env=None):
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_help_lists_every_command():
    result = run("-h")
    assert result.returncode == 0
    for command in ("start", "stop", "status", "env", "update"):
        assert f"  {command}" in result.stdout


def test_commands_without_a_stack_say_so(tmp_path):
    for command in ("status", "env"):
        result = run("--dir", str(tmp_path), command)
        assert result.returncode == 1 and "no container stack" in result.stderr
    result = run("--dir", str(tmp_path), "stop")
    assert result.returncode == 0 and "no container stack" in result.stdout


def test_bad_arguments_get_clear_errors(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.containers.cli",
            "--dir",
            str(tmp_path),
            "update",
            str(tmp_path / "missing.mar"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "does not exist" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "serving.containers.cli", "--dir", str(tmp_path), "start", "--replicas", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "at least 1" in result.stderr
    assert not (tmp_path / "state.json").exists()


def test_the_image_app_starts_without_torch(tmp_path, mar_path):
    """The MMS image has no torch: its modules must import without it."""
    context = images.mms_context(tmp_path / "mms", mar_path, wheel_cache=tmp_path / "wheels")
    assert (context / "model_store" / MAR_FILE_NAME).is_file()
    assert sorted(p.name for p in (context / "wheels").glob("mxnet-1.9.1-*.whl"))
    code = (
        "import sys; sys.modules['torch'] = None; "
        "import serving.mms.cli, serving.containers.entrypoint, serving.containers.health, "
        "serving.mms.metrics.exporter, fizbuz_v2; "
        # Every project module came from the context, none from the checkout (the venv's editable install).
        f"app = {str(context / 'app')!r}; print([m.__file__ for n, m in list(sys.modules.items()) "
        "if n.split('.')[0] in ('fizbuz', 'serving', 'fizbuz_codec', 'fizbuz_metrics', 'fizbuz_v2') "
        "and getattr(m, '__file__', None) and not m.__file__.startswith(app)])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=context / "app",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(context / "app"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # The image's venv gets the handler's protobuf at the project's pin.
    image_pins = [line for line in images.REQUIREMENTS.read_text().splitlines() if line and line[0] != "#"]
    assert "protobuf==7.36.2" in image_pins
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert set(image_pins) <= set(constraints)
    assert sorted(p.name for p in (context / "wheels").glob("protobuf-7.36.2-*.whl"))
    # MMS in the image renders its config from the repo's own config.properties.
    assert (context / "app/serving/mms/config.properties").read_bytes() == (
        ROOT / "serving/mms/config.properties"
    ).read_bytes()


def test_front_door_config_is_fully_rendered(tmp_path):
    stack = Stack(tmp_path)
    stack._front_files({}, Options(stack="demo"))
    text = (tmp_path / "front" / "nginx.conf").read_text()
    assert re.findall(r"@[A-Z_0-9]+@", text) == []  # named locations (@retry, ...) are lower case
    assert "tasks.demo_mms" in text and PREDICT_PATH in text
    assert '"~^(?i:Bearer) ' in (tmp_path / "front" / "tokens.map").read_text()  # case-sensitive token keys


def test_front_door_image_gets_door_js_and_the_pinned_njs_module(tmp_path):
    """door.js has one source (serving/front/door.js), baked in where the
    stack's nginx.conf looks for it; nginx and njs at the project's pins."""
    context = images.front_context(tmp_path / "front")
    assert (context / "door.js").read_bytes() == (ROOT / "serving/front/door.js").read_bytes()
    assert (context / "packages.txt").read_text().split() == ["nginx=1.22.*", "libnginx-mod-http-js=0.7.9*"]
    dockerfile = (context / "Dockerfile").read_text()
    assert f"COPY door.js {images.FRONT_DOOR_JS}" in dockerfile
    assert front_settings(Options()).door_js == images.FRONT_DOOR_JS
    stack = Stack(tmp_path / "stack")
    stack._front_files({}, Options(stack="demo"))
    text = (stack.front_dir / "nginx.conf").read_text()
    assert f"js_import fizbuz_door from {images.FRONT_DOOR_JS};" in text
    assert f"load_module {config.NJS_MODULE};" in text
    assert "ssl http2;" in text and "/inference.GRPCInferenceService/" in text


def test_env_prints_the_grpc_address_of_the_front_door(tmp_path):
    stack = Stack(tmp_path)
    stack.save({"options": {"front_port": 18443}})
    stack.front_dir.mkdir(parents=True)
    stack.token_file.write_text("")
    lines = dict(line.removeprefix("export ").split("=", 1) for line in stack.env_lines())
    assert lines["FIZBUZ_URL"] == "https://127.0.0.1:18443"
    assert lines["FIZBUZ_GRPC_URL"] == "127.0.0.1:18443"


@pytest.fixture(scope="module")
def batched_service(unpacked_model):
    return load_service(unpacked_model, 8)


def test_the_health_checks_v2_call_is_answered_right_by_the_handler(batched_service, unpacked_model):
    """The health check's v2 ModelInfer, as the handler gets it through MMS
    (headers by exact name, raw bytes), comes back in an envelope the check reads."""
    import fizbuz_service
    from fizbuz.handler_harness import load_context
    from mms.context import RequestProcessor

    assert {fizbuz_service.PROTOCOL_HEADER, fizbuz_service.CALL_HEADER, fizbuz_service.MODEL_HEADER} <= set(
        health.V2_HEADERS
    )
    assert health.V2_HEADERS[fizbuz_service.PROTOCOL_HEADER] == fizbuz_service.REST
    assert dict(config.CALL_HEADERS)["Content-Type"] == health.V2_HEADERS["Content-Type"]
    numbers = list(range(0, 1023, 7))
    body, headers = health.v2_request(numbers)
    context = batch_context(load_context(unpacked_model, 8), 1)
    context.request_processor = [RequestProcessor(headers)]
    reply = batched_service.handle([raw_request(body)], context)[0]
    status, content_type, payload = health.open_envelope(bytes(reply))
    assert (status, content_type) == (200, "application/json")
    assert health.v2_labels(payload) == [expected_reply(n)["next_number"] for n in numbers]
    with pytest.raises(ValueError):
        health.open_envelope(b'{"next_number": "Fizz"}')


def test_nodes_out_of_range_get_a_clear_error_and_nothing_is_made(tmp_path, mar_path):
    for nodes, managers in ((10, 1), (3, 4), (3, 0)):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "serving.containers.cli",
                "--dir",
                str(tmp_path),
                "start",
                "--nodes",
                str(nodes),
                "--managers",
                str(managers),
                "--mar",
                str(mar_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and "--nodes must be 2..9" in result.stderr
        assert list(tmp_path.iterdir()) == []


def test_the_stack_hands_mms_its_response_timeout(tmp_path, monkeypatch):
    from serving.mms.config import write_config

    monkeypatch.setenv("FIZBUZ_MMS_RESPONSE_TIMEOUT", "120")
    write_config(tmp_path / "config.properties", 8080, 8081)
    assert "default_response_timeout=120" in (tmp_path / "config.properties").read_text().splitlines()
    monkeypatch.setenv("FIZBUZ_MMS_RESPONSE_TIMEOUT", "0; rm -rf /")
    with pytest.raises(SettingError, match="FIZBUZ_MMS_RESPONSE_TIMEOUT='0; rm -rf /' is not a whole number"):
        write_config(tmp_path / "config.properties", 8080, 8081)
    assert Options().response_timeout == "30"  # the one-node stack keeps MMS's own


def test_a_v2_load_checks_v2_answers(monkeypatch):
    from serving.front import client

    monkeypatch.setattr(client, "tls_context", lambda cafile: None)  # no connection is made
    load = client.Load("127.0.0.1", 1, None, "t", 1, protocol="v2")
    assert load.path == "/v2/models/fizbuz_package/infer"
    assert load._right(14, {"outputs": [{"name": "next_number", "data": ["FizzBuzz"]}]})
    assert not load._right(14, {"outputs": [{"name": "next_number", "data": ["14"]}]})
    assert not load._right(14, "not json")
    with pytest.raises(ValueError):
        client.Load("127.0.0.1", 1, None, "t", 1, protocol="grpc")
