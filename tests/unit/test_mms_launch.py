"""Starting MMS's frontend: a silent death at start is retried once, a
frontend that said why it stopped is not, a frontend is known by the config it
was started with (and one on its way out is neither this folder's nor another's),
and stop leaves no frontend of its folder running."""

import contextlib
import logging
import subprocess
import sys

import pytest

from serving.mms import process as mms_process
from serving.mms.process import FrontendGone, RunFolder


@pytest.fixture
def run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create()
    return folder


def test_a_frontend_that_died_without_a_word_is_started_once_more(run, monkeypatch, caplog):
    calls = []

    def launch_once(run, model_store, env, user):
        calls.append(1)
        if len(calls) == 1:
            raise FrontendGone(run, console_before=0)
        return "frontend"

    monkeypatch.setattr(mms_process, "launch_once", launch_once)
    with caplog.at_level(logging.WARNING):
        assert mms_process.launch(run, "store") == "frontend"
    assert len(calls) == 2
    assert "exited right after it was started" in caplog.text and "starting it once more" in caplog.text


def test_a_frontend_that_said_why_is_not_started_again(run, monkeypatch):
    calls = []

    def launch_once(run, model_store, env, user):
        calls.append(1)
        run.console_log.write_text("Error: Could not find or load main class\n")
        raise FrontendGone(run, console_before=0)

    monkeypatch.setattr(mms_process, "launch_once", launch_once)
    with pytest.raises(FrontendGone, match="Could not find or load main class"):
        mms_process.launch(run, "store")
    assert len(calls) == 1


@contextlib.contextmanager
def fake_frontend(cwd, config):
    """A process whose command line looks like MMS's frontend started with
    `config` (mxnet-model-server passes it as -f PATH), working in `cwd`;
    killed on the way out if it is still running."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", mms_process.FRONTEND_MARKER, "-f", str(config)],
        cwd=cwd,
        stdin=subprocess.PIPE,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_the_frontend_is_known_by_its_config_not_its_working_folder(run, tmp_path, caplog):
    # /proc/PID/cwd can be unreadable for a moment in a live JVM: a frontend judged
    # gone for it was left running while a second one started on its ports.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with fake_frontend(elsewhere, run.config) as child:
        run.pid_file.write(child.pid)
        with caplog.at_level(logging.WARNING):
            assert run.server().pid == child.pid
        assert "another folder" not in caplog.text


class Exiting:
    """What psutil shows of a frontend between its exit and its zombie state: it
    passed the pid file's check a moment ago, and no command line is left."""

    pid = 4242

    def cmdline(self):
        return []


def test_a_frontend_on_its_way_out_is_no_server_and_not_another_folders(run, monkeypatch, caplog):
    run.pid_file.write(Exiting.pid)
    monkeypatch.setattr(run.pid_file, "process", Exiting)
    with caplog.at_level(logging.WARNING):
        assert run.server() is None
    assert "another folder" not in caplog.text


def test_stop_after_a_misjudged_pid_ends_every_frontend_of_the_folder(run):
    with fake_frontend(run.path, run.config) as child:
        run.pid_file.write(999_999_999)  # names no process: the stale path
        mms_process.stop(run, timeout=5)
        assert child.wait(timeout=30) is not None
        assert not run.pid_file.path.exists()


def test_a_live_frontend_of_another_folder_is_ignored_with_a_warning(run, tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with fake_frontend(elsewhere, elsewhere / "config.properties") as child:
        run.pid_file.write(child.pid)
        with caplog.at_level(logging.WARNING):
            assert run.server() is None
        assert "an MMS of another folder" in caplog.text
