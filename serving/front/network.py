"""The fleet's network: one Linux network namespace per host on a bridge, or,
without root, loopback addresses 127.x.y.z (all on this machine either way).

Every name carries the fleet's id (fbz<id>...), so tearing down finds all of it
again from the id alone, even after the process that made it was killed.
"""

import ctypes
import logging
import os
import random
import shutil
import subprocess
import threading
from dataclasses import dataclass

import psutil
from fizbuz.errors import FizbuzError

log = logging.getLogger(__name__)


class NetworkError(FizbuzError):
    pass


def ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def namespaces_possible():
    return os.geteuid() == 0 and shutil.which("ip") is not None


@dataclass
class Layout:
    """Names and addresses of one fleet's network; derived from its id only."""

    fleet_id: str
    mode: str  # "netns" or "loopback"
    subnet: str  # "10.213.7" or "127.77.7": hosts are .2, .3, ...

    @property
    def bridge(self):
        return f"fbz{self.fleet_id}"

    @property
    def gateway(self):
        return f"{self.subnet}.1"

    def namespace(self, index):
        return f"fbz{self.fleet_id}h{index}" if self.mode == "netns" else None

    def veth(self, index):
        return f"fbz{self.fleet_id}h{index}"  # root end; the host's end is eth0 in its namespace

    def address(self, index):
        return f"{self.subnet}.{index + 1}"  # index 1 -> .2: .1 is the bridge


def choose_subnet(mode):
    """A /24 nothing on this machine uses yet."""
    words = set()
    if shutil.which("ip"):
        words = set((ip("-o", "-4", "addr").stdout + ip("-4", "route").stdout).split())
    for _ in range(100):
        subnet = (
            f"10.{random.randrange(100, 255)}.{random.randrange(0, 256)}"
            if mode == "netns"
            else f"127.77.{random.randrange(1, 255)}"
        )
        if not any(word.startswith(subnet + ".") for word in words):
            return subnet
    raise NetworkError("no free /24 found for the fleet")


def create_bridge(layout):
    if layout.mode != "netns":
        return
    ip("link", "add", layout.bridge, "type", "bridge")
    ip("addr", "add", f"{layout.gateway}/24", "dev", layout.bridge)
    ip("link", "set", layout.bridge, "up")
    allow_forwarding(layout.bridge)


def _forward_rule(bridge):
    return ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]


def _iptables(action, bridge):
    return subprocess.run(
        ["iptables", "-w", "10", action, *_forward_rule(bridge)], capture_output=True, text=True, timeout=30
    )


def allow_forwarding(bridge):
    """Host-to-host packets cross the bridge. Where br_netfilter is loaded (Docker
    loads it and sets FORWARD's policy to DROP), they go through iptables' FORWARD
    chain and would be dropped: one rule of ours, first in the chain, lets the
    fleet's own bridge through. Removed by teardown."""
    if not shutil.which("iptables") or _iptables("-C", bridge).returncode == 0:
        return
    result = _iptables("-I", bridge)
    if result.returncode != 0:
        log.warning(
            "could not add an iptables FORWARD rule for %s (%s): hosts may not reach each other where Docker runs",
            bridge,
            result.stderr.strip(),
        )


def forwarding_rules(bridge):
    """How many of the fleet's FORWARD rules are present (0 when iptables is absent)."""
    if not shutil.which("iptables"):
        return 0
    listed = subprocess.run(
        ["iptables", "-w", "10", "-S", "FORWARD"], capture_output=True, text=True, timeout=30
    ).stdout
    return sum(1 for line in listed.splitlines() if f"-i {bridge} -o {bridge} -j ACCEPT" in line)


def add_host(layout, index):
    """A namespace with lo up and eth0 at the host's address, its veth on the bridge."""
    if layout.mode != "netns":
        return
    ns, veth, peer = layout.namespace(index), layout.veth(index), f"fbz{layout.fleet_id}p{index}"
    ip("netns", "add", ns)
    ip("link", "add", veth, "type", "veth", "peer", "name", peer)
    ip("link", "set", peer, "netns", ns)
    ip("link", "set", veth, "master", layout.bridge)
    ip("link", "set", veth, "up")
    ip("-n", ns, "link", "set", peer, "name", "eth0")
    ip("-n", ns, "addr", "add", f"{layout.address(index)}/24", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")  # the host's management API lives on its own loopback


def set_link(layout, index, up):
    """Cut or restore a host's cable (the root end of its veth)."""
    if layout.mode != "netns":
        raise NetworkError("links exist only in namespace mode")
    ip("link", "set", layout.veth(index), "up" if up else "down")


CLONE_NEWNET = 0x40000000


def run_in(namespace, function, *args, **kwargs):
    """function(*args, **kwargs) with its sockets in the network namespace
    `namespace` (None: this one), so a host's loopback-only management API is
    reached with the project's own client. A network namespace is per thread on
    Linux: a thread of its own joins it and ends with the call."""
    if namespace is None:
        return function(*args, **kwargs)
    outcome = {}

    def joined():
        try:
            with open(f"/run/netns/{namespace}") as handle:
                if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise NetworkError(f"cannot enter namespace {namespace}: {os.strerror(ctypes.get_errno())}")
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=joined, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def namespace_pids(ns):
    result = ip("netns", "pids", ns, check=False)
    return [int(word) for word in result.stdout.split()] if result.returncode == 0 else []


def leftovers(fleet_id):
    """(namespaces, links) of this fleet still present."""
    marker = f"fbz{fleet_id}"
    if not shutil.which("ip"):
        return [], []
    spaces = [
        line.split()[0]
        for line in ip("netns", "list", check=False).stdout.splitlines()
        if line.split() and line.split()[0].startswith(marker)
    ]
    links = []
    for line in ip("-o", "link", check=False).stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(marker):
            links.append(name)
    return spaces, links


def teardown(fleet_id):
    """Kill what still runs in the fleet's namespaces, then remove them, the veths
    and the bridge. Safe to repeat; works from the id alone."""
    spaces, links = leftovers(fleet_id)
    for ns in spaces:
        for pid in namespace_pids(ns):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        psutil.wait_procs([p for p in (_process(pid) for pid in namespace_pids(ns)) if p], timeout=10)
        ip("netns", "del", ns, check=False)
    for link in links:  # veths usually went with their namespace; the bridge is left
        ip("link", "del", link, check=False)
    bridge = f"fbz{fleet_id}"
    for _ in range(forwarding_rules(bridge)):
        _iptables("-D", bridge)
    spaces, links = leftovers(fleet_id)
    if spaces or links or forwarding_rules(bridge):
        raise NetworkError(f"could not remove {spaces + links} or the FORWARD rule of {bridge}")


def _process(pid):
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None
