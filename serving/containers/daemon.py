"""The Docker engine the stack runs on: a dockerd that already runs, or one of
our own with its own data-root, exec-root, socket, pid file and log, started
when none runs and stopped (with everything it left in the kernel: mounts,
bridges, iptables chains, the forwarding switch) by `stop`.

What each step of ours changed in the kernel (iptables rules and chains,
bridges, the FORWARD policy, ip_forward) is recorded in the state file right
after that step (`changes`, `merge`), so stop undoes exactly that (`undo`),
never by pattern: rules other programs added meanwhile stay."""

import dataclasses
import json
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from fizbuz.lifecycle import LifecycleError, PidFile, end_processes, processes_under, spawn, tail, wait_until

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/run/docker.sock"
# overlay2 is the fast one; some kernels or nested set-ups refuse it.
DRIVERS = ("overlay2", "fuse-overlayfs", "vfs")
BRIDGES = ("docker_gwbridge", "docker0")


def client_binary():
    """Debian's docker CLI matches its engine (20.10); another CLI (a newer one
    in /usr/local/bin) is told the engine's API version."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")


class Docker:
    """The docker CLI pointed at one engine."""

    def __init__(self, socket):
        self.socket = str(socket)
        binary = client_binary()
        if binary is None:
            raise LifecycleError("no docker client found (apt-get install docker.io)")
        self.binary = binary
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        self.env.pop("DOCKER_CONTEXT", None)
        if binary != "/usr/bin/docker":
            self.env.setdefault("DOCKER_API_VERSION", "1.41")

    def run(self, *args, stdin=None, timeout=300, check=True, output=None):
        """Run one docker command; returns its stdout. `output`: a file for a
        long command's output (a build), shown in part when it fails."""
        command = [self.binary, *map(str, args)]
        if output is not None:
            with open(output, "ab") as sink:
                done = subprocess.run(
                    command, env=self.env, stdin=stdin, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout
                )
            text, error = "", tail(output, 30)
        else:
            done = subprocess.run(
                command,
                env=self.env,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
            text, error = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        if check and done.returncode != 0:
            raise LifecycleError(
                f"docker {' '.join(map(str, args[:3]))} failed (exit {done.returncode}):\n{error.strip()[-3000:]}"
            )
        return text if done.returncode == 0 else None

    def answers(self):
        try:
            return self.run("version", "--format", "{{.Server.Version}}", timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return None

    def json(self, *args):
        return json.loads(self.run(*args) or "null")


# --------------------------------------------------------------------------- the host's state


def _ip_links():
    done = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True)
    return [link["ifname"] for link in json.loads(done.stdout or "[]")]


def _iptables_save(table):
    done = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
    return done.stdout.splitlines() if done.returncode == 0 else []


TABLES = ("filter", "nat")  # (mangle: iptables-nft would make it by listing it)
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclasses.dataclass
class HostSnapshot:
    """What the kernel holds at one moment: links, iptables rules and chains,
    the forwarding switch. Taken before and after each step of ours that makes
    the engine change them (its start, swarm init, a deployment); the
    difference is what that step changed (`changes`)."""

    links: list
    iptables: dict
    ip_forward: str

    @classmethod
    def take(cls):
        return cls(
            links=_ip_links(),
            iptables={t: _iptables_save(t) for t in TABLES},
            ip_forward=IP_FORWARD.read_text().strip(),
        )

    def restore(self):
        """For a state file written before changes were recorded: remove
        bridges, iptables rules and chains new since the snapshot and made by
        Docker (by pattern); put the forwarding switch back."""
        after = HostSnapshot.take()
        undo(changes(self, after, only=lambda line: "DOCKER" in line or "docker" in line), self)


def _chains(lines):
    """{chain: policy} declared in iptables-save lines (":NAME POLICY [counters]")."""
    return {line[1:].split()[0]: line.split()[1] for line in lines if line.startswith(":")}


def changes(before, after, only=lambda line: True):
    """What changed from `before` to `after` (two HostSnapshots), as a state
    file keeps it: rules and chains added per table, Docker's bridges added,
    the FORWARD policy and ip_forward as [before, after] when they changed."""
    found = {
        "rules": {},
        "chains": {},
        "links": [link for link in BRIDGES if link in after.links and link not in before.links],
    }
    for table in TABLES:
        was, now = before.iptables.get(table, []), after.iptables.get(table, [])
        rules = [line for line in now if line.startswith("-A ") and line not in set(was) and only(line)]
        chains = [chain for chain in _chains(now) if chain not in _chains(was) and only(chain)]
        found["rules"][table], found["chains"][table] = rules, chains
    policies = [_chains(snapshot.iptables.get("filter", [])).get("FORWARD", "ACCEPT") for snapshot in (before, after)]
    found["forward_policy"] = policies if policies[0] != policies[1] else None
    found["ip_forward"] = [before.ip_forward, after.ip_forward] if before.ip_forward != after.ip_forward else None
    return found


def merge(recorded, new):
    """`recorded` (a state file's changes, or None) with `new` added: what stop will undo."""
    if not recorded:
        return new
    for kind in ("rules", "chains"):
        for table, lines in new[kind].items():
            recorded[kind].setdefault(table, []).extend(l for l in lines if l not in recorded[kind][table])
    recorded["links"] += [link for link in new["links"] if link not in recorded["links"]]
    for key in ("forward_policy", "ip_forward"):  # the first value before us, the last one we set
        if new[key]:
            recorded[key] = [recorded[key][0] if recorded[key] else new[key][0], new[key][1]]
    return recorded


def _iptables(table, *args):
    return subprocess.run(["iptables", "-w", "10", "-t", table, *args], capture_output=True, text=True)


def undo(recorded, before):
    """Undo exactly what was recorded (merge/changes), nothing else: each
    recorded rule still there is deleted, each recorded chain flushed and
    deleted, Docker's recorded bridges removed, and the FORWARD policy and
    ip_forward set back when they still hold the value we caused. `before`:
    the snapshot taken before our dockerd started (which tables existed)."""
    for link in recorded["links"]:
        if link in _ip_links():
            subprocess.run(["ip", "link", "delete", link], capture_output=True)
            log.info("removed the bridge %s", link)
    for table in TABLES:
        present = set(_iptables_save(table))
        for line in reversed(recorded["rules"].get(table, [])):
            if line in present:
                _iptables(table, "-D", *shlex.split(line)[1:])
        chains = recorded["chains"].get(table, [])
        for chain in chains:
            _iptables(table, "-F", chain)
        for chain in chains:  # after every flush: one chain may jump to another
            _iptables(table, "-X", chain)
        if (
            not before.iptables.get(table)
            and shutil.which("nft")
            and not any(line.startswith("-A ") for line in _iptables_save(table))
            and recorded["chains"].get(table)
        ):
            # iptables-nft made the table for dockerd: take it away again.
            subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
    policy = recorded.get("forward_policy")
    if policy and _chains(_iptables_save("filter")).get("FORWARD") == policy[1]:
        _iptables("filter", "-P", "FORWARD", policy[0])
    forward = recorded.get("ip_forward")
    if forward and IP_FORWARD.read_text().strip() == forward[1]:
        IP_FORWARD.write_text(forward[0] + "\n")


# --------------------------------------------------------------------------- encrypted overlays


def overlay_encryption():
    """(works, why): whether this kernel can carry an encrypted overlay
    (`driver_opts: encrypted`): Docker keys IPsec ESP with AES-GCM
    (rfc4106(gcm(aes))) between nodes, which needs the kernel's esp4 and GCM.
    Asked the kernel itself: one such security association added in a
    throw-away network namespace, which goes with it."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        return False, "cannot check without root and iproute2"
    namespace = f"fbzesp{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", namespace], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        return False, f"cannot make a namespace to check in: {made.stderr.strip()}"
    try:
        added = subprocess.run(
            [
                "ip",
                "-n",
                namespace,
                "xfrm",
                "state",
                "add",
                "src",
                "192.0.2.1",
                "dst",
                "192.0.2.2",
                "proto",
                "esp",
                "spi",
                "0x100",
                "reqid",
                "1",
                "mode",
                "transport",
                "aead",
                "rfc4106(gcm(aes))",
                "0x" + "00" * 20,
                "64",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
    if added.returncode != 0:
        return False, f"the kernel refuses an ESP AES-GCM security association ({added.stderr.strip()})"
    return True, "ESP with AES-GCM works"


# --------------------------------------------------------------------------- our own dockerd


class Dockerd:
    """A dockerd of our own; every path it writes is under `folder` and
    `exec_root` (kept short: containerd's socket paths must fit 108 bytes)."""

    def __init__(self, folder, exec_root, extra_args=()):
        self.folder = Path(folder)
        self.extra_args = list(extra_args)
        self.exec_root = Path(exec_root)
        self.data_root = self.folder / "data"
        self.socket = self.folder / "docker.sock"
        self.pid_file = PidFile(self.folder / "dockerd.pid", "dockerd")
        self.log_file = self.folder / "logs" / "dockerd.log"

    def command(self, driver):
        return [
            "dockerd",
            "--data-root",
            self.data_root,
            "--exec-root",
            self.exec_root,
            "--host",
            f"unix://{self.socket}",
            "--pidfile",
            self.folder / "dockerd-own.pid",
            "--storage-driver",
            driver,
            "--bridge",
            "none",  # no docker0: builds use the host's network
            # Published ports by iptables alone: docker-proxy (userland) halved req/s at c=64.
            "--userland-proxy=false",
            "--log-level",
            "warn",
            *self.extra_args,
        ]

    def start(self, timeout=90):
        """Try the storage drivers in order; returns the one that works."""
        if shutil.which("dockerd") is None:
            raise LifecycleError("dockerd is missing (apt-get install docker.io)")
        for driver in DRIVERS:
            if driver == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
                continue
            log.info(
                "starting our own dockerd (storage driver %s, data-root %s, log %s)",
                driver,
                self.data_root,
                self.log_file,
            )
            process = spawn(self.command(driver), self.log_file, pid_file=self.pid_file)
            docker = Docker(self.socket)
            try:
                wait_until(
                    docker.answers,
                    timeout,
                    "our dockerd to answer",
                    interval=0.3,
                    alive=lambda process=process: process.poll() is None,
                )
                return driver
            except LifecycleError as error:
                log.warning("dockerd with %s did not come up (%s); log:\n%s", driver, error, tail(self.log_file, 8))
                self.stop()
        raise LifecycleError(f"dockerd did not start with any storage driver {DRIVERS}; see {self.log_file}")

    def running(self):
        return self.pid_file.process() is not None

    def stop(self, grace=60):
        """Stop dockerd (it stops its containers and containerd), then remove
        its mounts and folders."""
        pid = self.pid_file.stop(grace=grace)
        # After a kill -9 of dockerd its containerd and shims live on, orphaned:
        # found by their command lines, which name our exec-root.
        end_processes(processes_under(self.exec_root), grace=5)
        for root in (self.exec_root, self.data_root):
            unmount_under(root)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        (self.folder / "dockerd-own.pid").unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        return pid


def unmount_under(folder):
    """Unmount what is still mounted under `folder` (deepest first): after a
    kill -9 of dockerd, overlay and shm mounts and netns files stay behind."""
    prefix = str(Path(folder).resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix) or m + "/" == prefix), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
