"""Issue 22, item 3: MMS's management API (no authentication; registering a
model runs its handler) answers only the server's owner: another local user
(`runuser -u nobody`) can neither list nor register a model, while the
predictions API stays open to everyone (the front door and the clients)."""

import json
import os
import socket
import subprocess

import pytest

from fizbuz.lifecycle import free_port
from serving.mms import guard
from probes import curl_status

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="the owner-only rule needs root (iptables)"),
]


def http_code(port, method, path, as_nobody):
    return curl_status(f"http://127.0.0.1:{port}{path}", method, user="nobody" if as_nobody else None)


def output_rules():
    return subprocess.run(
        ["iptables", "-w", "5", "-S", "OUTPUT"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def test_another_local_user_cannot_reach_management_nor_register_a_model(mms):
    port = mms.management_port
    register = "/models?url=fizbuz_package.mar&model_name=intruder&initial_workers=1&synchronous=true"
    assert http_code(port, "GET", "/models", as_nobody=True) == "000"
    assert http_code(port, "POST", register, as_nobody=True) == "000"
    # The owner still manages it, and nothing was registered.
    listed = subprocess.run(
        ["curl", "-s", "--max-time", "5", f"http://127.0.0.1:{port}/models"], capture_output=True, text=True, timeout=30
    ).stdout
    names = [model["modelName"] for model in json.loads(listed)["models"]]
    assert "intruder" not in names and "fizbuz_package" in names, names
    # Predictions stay open to every local user.
    assert http_code(mms.inference_port, "GET", "/ping", as_nobody=True) == "200"


def test_the_rule_is_added_once_and_stop_deletes_exactly_it(tmp_path):
    port = free_port()

    def rules_for_port():  # (other servers may add or delete their own rules meanwhile)
        return [line for line in output_rules().splitlines() if f"--dport {port} " in line]

    assert rules_for_port() == []
    listener = socket.create_server(("127.0.0.1", port))  # the kernel completes connections in its backlog
    try:
        added = guard.close(tmp_path, port)
        assert guard.close(tmp_path, port) == added  # a second start (after a crash) adds no copy
        assert len(rules_for_port()) == 1, rules_for_port()
        nobody = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                "python3",
                "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert nobody.returncode != 0 and "ConnectionRefusedError" in nobody.stderr, nobody.stderr
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # the owner connects
    finally:
        assert guard.open_again(tmp_path) is not None
        listener.close()
    assert rules_for_port() == []
    assert guard.open_again(tmp_path) is None  # nothing recorded any more
