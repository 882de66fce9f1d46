"""fizbuz.lifecycle's clean-up of strays: processes a killed server leaves
behind, found by a folder in their command line or in their open files."""

import subprocess
import sys

import psutil

from fizbuz.lifecycle import end_processes, processes_under

# Holds a file open under the folder given as argv[1], and names a path in argv[2].
HOLDER = "import sys, time; handle = open(sys.argv[1] + '/held', 'w'); print('open', flush=True); time.sleep(600)"


def start(folder, named):
    process = psutil.Popen([sys.executable, "-c", HOLDER, str(folder), str(named)], stdout=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
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
        assert processes_under(held) == []                       # not in its command line
        assert processes_under(named, names=("java",)) == []     # another program's name
        assert processes_under(elsewhere, open_files=True) == []
        end_processes(processes_under(named, names=("python",)))
        psutil.wait_procs([process], timeout=10)
        assert not process.is_running()
    finally:
        if process.is_running():
            process.kill()
            process.wait(10)
