"""fizbuz.lifecycle's shared pieces for server scripts: waits that treat a
server's "not yet" errors as false, the stop command, the command line; and
the clean-up of strays a killed server leaves behind."""

import subprocess
import sys

import psutil
import pytest

from fizbuz import lifecycle
from fizbuz.lifecycle import LifecycleError, PidFile, end_processes, processes_under


def test_wait_until_counts_not_yet_errors_as_false():
    answers = iter([ConnectionError("refused"), None, "up"])

    def condition():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert lifecycle.wait_until(condition, 10, "a server", interval=0, not_yet=(ConnectionError,)) == "up"


def test_wait_until_lets_other_errors_through():
    def condition():
        raise KeyError("a bug, not a server starting")

    with pytest.raises(KeyError):
        lifecycle.wait_until(condition, 10, "a server", not_yet=(ConnectionError,))


def test_stop_server_stops_by_pid_file_and_says_so(tmp_path, caplog):
    pid_file = PidFile(tmp_path / "sleeper.pid", marker="fizbuz-lifecycle-sleeper")
    process = lifecycle.spawn(
        [sys.executable, "-c", "import signal; signal.pause()", "fizbuz-lifecycle-sleeper"],
        tmp_path / "sleeper.log",
        pid_file=pid_file,
    )
    with caplog.at_level("INFO", logger="fizbuz.lifecycle"):
        assert lifecycle.stop_server(pid_file, "sleeper", grace=10) == 0
        assert lifecycle.stop_server(pid_file, "sleeper", grace=10) == 0  # twice is fine
    assert not lifecycle.is_alive(process) and not pid_file.path.exists()
    assert f"stopped pid {process.pid} (sleeper)" in caplog.text
    assert "no sleeper is running" in caplog.text


def test_server_cli_runs_the_command_and_reports_errors(capsys):
    def failing(settings):
        raise LifecycleError(f"broken {settings}")

    commands = {"start": lambda settings: 0, "stop": failing}
    assert lifecycle.server_cli([], "x/serve.sh", "doc", commands, lambda: "settings") == 0
    assert lifecycle.server_cli(["stop"], "x/serve.sh", "doc", commands, lambda: "settings") == 1
    assert capsys.readouterr().err == "serve.sh: broken settings\n"
    with pytest.raises(SystemExit):
        lifecycle.server_cli(["bogus"], "x/serve.sh", "doc", commands, lambda: "settings")


# Holds a file open under the folder given as argv[1], and names a path in argv[2].
HOLDER = "import signal, sys; handle = open(sys.argv[1] + '/held', 'w'); print('open', flush=True); signal.pause()"


def start(folder, named):
    process = psutil.Popen(
        [sys.executable, "-c", HOLDER, str(folder), str(named)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    assert process.stdout.readline() == b"open\n"  # the file is open: no sleep-as-readiness
    return process


def test_strays_are_found_by_command_line_or_open_file_and_ended(tmp_path):
    held, named, elsewhere = tmp_path / "held", tmp_path / "named", tmp_path / "elsewhere"
    for folder in (held, named, elsewhere):
        folder.mkdir()
    process = start(held, named / "x")
    try:
        assert [p.pid for p in processes_under(named, names=("python",))] == [process.pid]
        assert [p.pid for p in processes_under(held, open_files=True)] == [process.pid]
        assert processes_under(held) == []  # not in its command line
        assert processes_under(named, names=("java",)) == []  # another program's name
        assert processes_under(elsewhere, open_files=True) == []
        end_processes(processes_under(named, names=("python",)))
        psutil.wait_procs([process], timeout=10)
        assert not process.is_running()
    finally:
        if process.is_running():
            process.kill()
            process.wait(10)
