"""The container room's parts that need no Docker engine: the command line's
errors, the MMS image's build context (the app runs without torch), the front
door's rendered config."""

import subprocess
import sys

from fizbuz.contract import MAR_FILE_NAME, PREDICT_PATH, ROOT
from serving.containers import images
from serving.containers.stack import Options, Stack

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
    result = subprocess.run([sys.executable, "-m", "serving.containers.cli", "--dir", str(tmp_path), "update",
                             str(tmp_path / "missing.mar")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "does not exist" in result.stderr
    result = subprocess.run([sys.executable, "-m", "serving.containers.cli", "--dir", str(tmp_path), "start",
                             "--replicas", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "at least 1" in result.stderr
    assert not (tmp_path / "state.json").exists()


def test_the_image_app_starts_without_torch(tmp_path, mar_path):
    """The MMS image has no torch: its modules must import without it."""
    context = images.mms_context(tmp_path / "mms", mar_path, wheel_cache=tmp_path / "wheels")
    assert (context / "model_store" / MAR_FILE_NAME).is_file()
    assert sorted(p.name for p in (context / "wheels").glob("mxnet-1.9.1-*.whl"))
    code = ("import sys; sys.modules['torch'] = None; "
            "import serving.mms.cli, serving.containers.entrypoint, serving.containers.health, "
            "serving.metrics.exporter; "
            # Every project module came from the context, none from the checkout (the venv's editable install).
            f"app = {str(context / 'app')!r}; print([m.__file__ for n, m in list(sys.modules.items()) "
            "if n.split('.')[0] in ('fizbuz', 'serving', 'fizbuz_codec', 'fizbuz_metrics') "
            "and getattr(m, '__file__', None) and not m.__file__.startswith(app)])")
    result = subprocess.run([sys.executable, "-c", code], cwd=context / "app", capture_output=True, text=True,
                            env={"PYTHONPATH": str(context / "app"), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_front_door_config_is_fully_rendered(tmp_path):
    stack = Stack(tmp_path)
    stack._front_files({}, Options(stack="demo"))
    text = (tmp_path / "front" / "nginx.conf").read_text()
    assert "@" not in text.replace("@retry", "").replace("@too_large", "").replace("@too_many", "") \
        .replace("@no_host", "").replace("@not_ready", "")
    assert "tasks.demo_mms" in text and PREDICT_PATH in text
    assert '"Bearer ' in (tmp_path / "front" / "tokens.map").read_text()
