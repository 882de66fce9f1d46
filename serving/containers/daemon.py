"""The Docker engine the stack runs on: a dockerd that already runs, or one of
our own with its own data-root, exec-root, socket, pid file and log, started
when none runs and stopped (with everything it left in the kernel: mounts,
bridges, iptables chains, the forwarding switch) by `stop`.

What was there before is written down at start (`HostSnapshot`), so stop only
removes what is new."""

import dataclasses
import json
import logging
import os
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
                done = subprocess.run(command, env=self.env, stdin=stdin, stdout=sink, stderr=subprocess.STDOUT,
                                      timeout=timeout)
            text, error = "", tail(output, 30)
        else:
            done = subprocess.run(command, env=self.env, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout)
            text, error = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        if check and done.returncode != 0:
            raise LifecycleError(f"docker {' '.join(map(str, args[:3]))} failed (exit {done.returncode}):\n"
                                 f"{error.strip()[-3000:]}")
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


@dataclasses.dataclass
class HostSnapshot:
    """What the kernel held before our dockerd: links, iptables rules and
    chains, the forwarding switch."""
    links: list
    iptables: dict
    ip_forward: str

    @classmethod
    def take(cls):
        return cls(links=_ip_links(), iptables={t: _iptables_save(t) for t in ("filter", "nat")},
                   ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip())

    def restore(self):
        """Remove bridges, iptables rules and chains that are new since the
        snapshot and were made by Docker; put the forwarding switch back."""
        for link in BRIDGES:
            if link in _ip_links() and link not in self.links:
                subprocess.run(["ip", "link", "delete", link], capture_output=True)
                log.info("removed the bridge %s", link)
        for table, before in self.iptables.items():
            before = set(before)
            now = _iptables_save(table)
            for line in now:
                if line.startswith("-A ") and line not in before and ("DOCKER" in line or "docker" in line):
                    subprocess.run(["iptables", "-t", table, "-D", *line[3:].split()], capture_output=True)
            for line in now:
                if line.startswith(":DOCKER") and not any(b.split()[0] == line.split()[0] for b in before
                                                          if b.startswith(":")):
                    chain = line[1:].split()[0]
                    subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
                    subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
            if table == "filter":  # dockerd sets FORWARD to DROP; no table before means ACCEPT
                policy = next((b.split()[1] for b in before if b.startswith(":FORWARD ")), "ACCEPT")
                subprocess.run(["iptables", "-P", "FORWARD", policy], capture_output=True)
            if not before and shutil.which("nft") and not any(
                    line.startswith("-A ") for line in _iptables_save(table)):
                # iptables-nft made the table for dockerd: take it away again.
                subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")


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
        return ["dockerd", "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--host", f"unix://{self.socket}", "--pidfile", self.folder / "dockerd-own.pid",
                "--storage-driver", driver,
                "--bridge", "none",            # no docker0: builds use the host's network
                # Published ports by iptables alone: docker-proxy (userland) halved req/s at c=64.
                "--userland-proxy=false",
                "--log-level", "warn", *self.extra_args]

    def start(self, timeout=90):
        """Try the storage drivers in order; returns the one that works."""
        if shutil.which("dockerd") is None:
            raise LifecycleError("dockerd is missing (apt-get install docker.io)")
        for driver in DRIVERS:
            if driver == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
                continue
            log.info("starting our own dockerd (storage driver %s, data-root %s, log %s)",
                     driver, self.data_root, self.log_file)
            process = spawn(self.command(driver), self.log_file, pid_file=self.pid_file)
            docker = Docker(self.socket)
            try:
                wait_until(docker.answers, timeout, "our dockerd to answer", interval=0.3,
                           alive=lambda: process.poll() is None)  # noqa: B023 (called in this iteration only)
                return driver
            except LifecycleError as error:
                log.warning("dockerd with %s did not come up (%s); log:\n%s", driver, error,
                            tail(self.log_file, 8))
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
    for point in sorted((m for m in mounts if m.startswith(prefix) or m + "/" == prefix),
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
