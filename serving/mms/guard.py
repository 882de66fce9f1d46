"""MMS's management API answers only the server's owner (issue 22, item 3).

MMS 1.0.8's management API has no authentication: whoever reaches it can
register a model from a URL, and a model's handler is code the server runs.
It listens on 127.0.0.1 only, but every local user (and a web page in a local
browser: MMS checks neither Origin nor Host) reaches 127.0.0.1. So before MMS
starts, an iptables rule refuses (TCP reset) connections to the management
port on the loopback from any process not run by the owner's uid (the owner
match sees the uid of the socket that connects); `stop` deletes exactly the
rule it added, recorded in the run folder. In the fleet, each host's MMS runs
in its own network namespace, with its own rule there, as an unprivileged user
(fizbuz-mms): the rule lets that user and root through, nobody else.

Adding a rule needs root (CAP_NET_ADMIN) and iptables: without them the server
still starts, with a warning that the management API is open to local users.
"""

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

from fizbuz.lifecycle import LifecycleError

log = logging.getLogger(__name__)
RECORD_NAME = "management_guard.json"


def rule(port, *owner_uids):
    """The rule's iptables arguments after the chain and the action (-I/-D/-C):
    a reset for every socket whose uid is none of `owner_uids` (one owner match
    per uid, all of which must say "not this one")."""
    owners = [word for uid in owner_uids for word in ("-m", "owner", "!", "--uid-owner", str(uid))]
    uids = " and ".join(map(str, owner_uids))
    return [
        "-o",
        "lo",
        "-p",
        "tcp",
        "-d",
        "127.0.0.0/8",
        "--dport",
        str(port),
        *owners,
        "-m",
        "comment",
        "--comment",
        f"fizbuz: MMS management {port} for uid {uids} only",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]


def _iptables(action, arguments, namespace=""):
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return subprocess.run(
        [*prefix, "iptables", "-w", "5", action, "OUTPUT", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def _namespace():
    """The name of the network namespace this process is in ("" for the root
    one, or when `ip` cannot tell): the fleet starts a host's MMS inside its
    namespace but stops it from the root one."""
    named = subprocess.run(
        ["ip", "netns", "identify", str(os.getpid())],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return named.stdout.strip() if named.returncode == 0 else ""


def _namespaces():
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def close(run_path, port, server_uid=None):
    """Add the owner-only rule for `port` and record it; returns the rule, or
    None when this process may not add one (not root, or no iptables).
    `server_uid`: the user MMS runs as when root starts it as another one
    (serving/mms/process.hand_over); root, which registers the model and
    manages the fleet's hosts, keeps its access."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        log.warning(
            "the management API on 127.0.0.1:%d is open to every local user (an owner-only "
            "iptables rule needs root and iptables)",
            port,
        )
        return None
    owners = [server_uid] if server_uid not in (None, os.geteuid()) else []
    arguments = rule(port, *owners, os.geteuid())
    if _iptables("-C", arguments).returncode != 0:  # not there yet (a crashed server may have left it)
        added = _iptables("-I", arguments)
        if added.returncode != 0:
            raise LifecycleError(f"could not add the management API's owner-only rule: {added.stderr.strip()}")
    Path(run_path, RECORD_NAME).write_text(
        json.dumps({"chain": "OUTPUT", "rule": arguments, "namespace": _namespace()})
    )
    log.info(
        "management API on 127.0.0.1:%d: only uid %s may connect (iptables owner match)",
        port,
        " and ".join(map(str, [*owners, os.geteuid()])),
    )
    return arguments


def open_again(run_path):
    """Delete the rule `close` recorded for this run folder (nothing else)."""
    record = Path(run_path, RECORD_NAME)
    try:
        recorded = json.loads(record.read_text())
        arguments, namespace = recorded["rule"], recorded.get("namespace", "")
    except (FileNotFoundError, ValueError, KeyError):
        return None
    if namespace and namespace == _namespace():
        namespace = ""  # we are in it
    elif namespace and namespace not in _namespaces():
        record.unlink()  # the namespace, and its rules, are gone already
        return arguments
    while _iptables("-C", arguments, namespace).returncode == 0:  # added twice by hand? delete every copy
        deleted = _iptables("-D", arguments, namespace)
        if deleted.returncode != 0:
            raise LifecycleError(f"could not delete the management API's rule: {deleted.stderr.strip()}")
    record.unlink()
    return arguments
