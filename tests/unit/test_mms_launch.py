"""Starting MMS's frontend: a silent death at start is retried once, a
frontend that said why it stopped is not, and a pid file naming a process on
its way out is not mistaken for another folder's server."""

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


class Exiting:
    """What psutil shows of a process between its exit and its zombie state:
    still there, no working folder left ("")."""

    pid = 4242

    def cwd(self):
        return ""


def test_a_frontend_on_its_way_out_is_no_server_and_not_another_folders(run, monkeypatch, caplog):
    run.pid_file.write(Exiting.pid)
    monkeypatch.setattr(run.pid_file, "process", Exiting)
    with caplog.at_level(logging.WARNING):
        assert run.server() is None
    assert "another folder" not in caplog.text


def test_a_live_frontend_of_another_folder_is_ignored_with_a_warning(run, tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", mms_process.FRONTEND_MARKER],
        cwd=elsewhere,
        stdin=subprocess.PIPE,
    )
    try:
        run.pid_file.write(child.pid)
        with caplog.at_level(logging.WARNING):
            assert run.server() is None
        assert "an MMS of another folder" in caplog.text
    finally:
        child.kill()
        child.wait()
