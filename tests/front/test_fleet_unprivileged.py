"""Issue 22, item 3 (last part): in the namespace fleet, each host's MMS — its
Java frontend, every worker of both registrations, and its metrics exporter —
runs as an unprivileged user, not root; predictions still answer right; the
management API's owner rule names that user (and root, which manages the
hosts), so another user inside the namespace is still refused; what MMS only
reads (config, model store) it cannot change, and what it writes (logs, TMPDIR)
is closed to other users. (Stopping by pid after a kill -9 of every part:
test_fleet_cli.py, with the same unprivileged hosts.)"""

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from fizbuz.contract import MAR_FILE_NAME, MAX_INPUT, MIN_INPUT, expected_reply
from serving.mms.metrics import control as metrics_control
from probes import curl_status

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and another user need root")]


def uids(pid):
    """(real, effective, saved, filesystem) uid of a process, from /proc/PID/status."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return tuple(int(word) for word in line.split()[1:])


def in_namespace(host, user, *command):
    return subprocess.run(
        ["ip", "netns", "exec", host.namespace, "runuser", "-u", user, "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def management_status(host, user):
    return curl_status(f"http://127.0.0.1:{host.management_port}/models", user=user, namespace=host.namespace)


@pytest.fixture(scope="module")
def hosts(fleet):
    hosts = fleet.healthy().hosts
    assert hosts and all(host.namespace for host in hosts), hosts
    return hosts


def test_every_mms_process_of_every_host_runs_unprivileged(hosts):
    for host in hosts:
        workers = host.worker_processes()
        # Every worker MMS reports READY has a process: both registrations, none missed.
        assert len(workers) == host.workers + host.single_workers, (host.name, workers)
        exporter = metrics_control.pid_file(host.run).process()
        processes = {
            "frontend": host.frontend(),
            "exporter": exporter,
            **{f"worker {wid}": process for wid, process in workers.items()},
        }
        assert None not in processes.values(), processes
        for what, process in processes.items():
            assert 0 not in uids(process.pid), (host.name, what, uids(process.pid))
        user = pwd.getpwnam(host.run_as)  # the fleet's dedicated user (fizbuz-mms), for all of them
        for what, process in processes.items():
            assert uids(process.pid) == (user.pw_uid,) * 4, (host.name, what, uids(process.pid))


def test_unprivileged_hosts_still_answer_right(fleet, hosts):
    for host in hosts:  # straight to each host, both registrations and the v2 call
        assert host.wrong_answers(range(MIN_INPUT, MAX_INPUT + 1, 7)) == [], host.name
    for number in (1, 14, 29, 1022):  # and through the front door
        status, _, body = fleet.predict(number)
        assert status == 200 and json.loads(body) == expected_reply(number), (number, status, body)


def test_the_management_rule_names_the_mms_user_and_refuses_other_users(hosts):
    for host in hosts:
        uid = pwd.getpwnam(host.run_as).pw_uid
        rules = subprocess.run(
            ["ip", "netns", "exec", host.namespace, "iptables", "-w", "5", "-S", "OUTPUT"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        ours = [line for line in rules.splitlines() if f"--dport {host.management_port} " in line]
        assert len(ours) == 1 and f"! --uid-owner {uid} " in ours[0] and "! --uid-owner 0 " in ours[0], ours
        assert management_status(host, host.run_as) == "200"  # MMS's own user (its exporter asks there)
        assert management_status(host, "nobody") == "000"  # anyone else: reset


def test_mms_cannot_change_what_it_serves_and_its_files_are_closed_to_others(hosts):
    for host in hosts:
        user = pwd.getpwnam(host.run_as)
        run = host.run
        read_only = [run.path, run.config, run.log_config, host.model_store, host.model_store / MAR_FILE_NAME]
        for path in read_only:
            st = path.stat()
            assert st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), (path, oct(st.st_mode))
            assert in_namespace(host, host.run_as, "test", "-w", str(path)).returncode != 0, path
        assert in_namespace(host, host.run_as, "test", "-r", str(host.model_store / MAR_FILE_NAME)).returncode == 0
        for folder in (run.tmp, run.logs):
            st = folder.stat()
            assert st.st_uid == user.pw_uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IROTH), (
                folder,
                oct(st.st_mode),
            )
            assert in_namespace(host, "nobody", "ls", str(folder)).returncode != 0, folder
        assert (run.logs / "mms_log.log").stat().st_uid == user.pw_uid  # written by MMS itself
