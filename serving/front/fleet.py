"""A local fleet: N model hosts (namespaces on a bridge, or loopback addresses)
and the front door in the root namespace, described by one state file.

The state file is written before anything is made, so `stop` finds every part
(processes, namespaces, veths, bridge) again after a crash or a kill -9.
"""

import dataclasses
import logging
import os
import secrets
import stat
import subprocess
import time
from pathlib import Path

from fizbuz import settings, users
from fizbuz.contract import MAR_FILE_NAME, MODEL_NAME, MODEL_STORE, SINGLE_MODEL_NAME, SINGLE_PREDICT_PATH
from fizbuz.http_client import answers_smoke_request
from fizbuz.lifecycle import JsonState, check_port_free, end_processes, free_port, processes_under, tail, wait_until
from serving.front import client, network, tokens
from serving.front.config import FrontSettings, check_overload, target_map
from serving.front.hosts import Host
from serving.front.nginx import FrontDoor
from serving.front.metrics import control as front_control
from serving.mms.metrics.control import metrics_url
from serving.mms.config import tls_files
from fizbuz.errors import FizbuzError

log = logging.getLogger(__name__)
STATE_FILE = "fleet.json"


class FleetError(FizbuzError):
    pass


# One nginx worker: on this 2-core box, shared with MMS, more workers cost more
# CPU per request in task switches (bench/front_door_cpu.py, docs/overload.md);
# a front door on a machine of its own wants --nginx-workers auto.
FLEET_NGINX_WORKERS = settings.default("nginx_workers")


@dataclasses.dataclass
class Options:
    hosts: int = 2
    workers: int = 2
    front_port: int = 8443
    listen_address: str = "127.0.0.1"
    loopback: bool = False  # force 127.x addresses even as root
    external_hosts: list = None  # real hosts "addr:port": front door only
    mar: str = str(MODEL_STORE / MAR_FILE_NAME)
    certificate: str = None
    key: str = None
    rate: int = FrontSettings.rate
    burst: int = FrontSettings.burst
    body_cap: str = FrontSettings.body_cap
    read_timeout: float = FrontSettings.read_timeout
    nginx_workers: str = None  # None: FLEET_NGINX_WORKERS
    metrics_port: int = front_control.DEFAULT_PORT  # the front door's exporter; 0: no metrics
    # Adaptive batching (issue 13): each host also registers the model with batch 1
    # and no delay on this many workers; the front door sends quiet-time requests there.
    single_workers: int = 1
    routing: str = FrontSettings.routing  # "batched": off (single_workers is then 0)
    adaptive_threshold: int = FrontSettings.adaptive_threshold
    # Overload (issue 23): requests in flight per host entry (0: off), retries in
    # flight per retry-group entry (0: unbounded); each host's batch size.
    admission: int = FrontSettings.admission
    retry_budget: int = FrontSettings.retry_budget
    retry_share: float = FrontSettings.retry_share  # retries per recent success (0: no share budget)
    retry_floor: float = FrontSettings.retry_floor  # retries/s whatever the successes
    batch_size: int = Host.batch_size
    # Issue 22: started by root, each local host's MMS runs as this unprivileged user.
    mms_user: str = settings.default("fleet_mms_user")


class Fleet(JsonState):
    what = "fleet"
    error = FleetError

    def __init__(self, directory):
        self.dir = Path(directory).resolve()
        self.state_file = self.dir / STATE_FILE
        self.door = FrontDoor(self.dir / "front")
        self.token_file = self.dir / "tokens.txt"

    @staticmethod
    def hosts(state):
        return [Host(**row) for row in state["hosts"]]

    @staticmethod
    def layout(state):
        return network.Layout(state["id"], state["mode"], state["subnet"])

    @staticmethod
    def settings(state):
        front = dict(state["front"])
        front["drained"] = set(front.get("drained", []))
        return FrontSettings(**front)

    # ------------------------------------------------------------ start
    def start(self, options):
        state = self.load()
        if state is not None:
            log.info(
                "fleet %s already in %s: starting only what is not running "
                "(stop it first to change its shape or settings)",
                state["id"],
                self.dir,
            )
            return self._heal(state)
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._plan(options)
        self.save(state)  # first: from here on, stop can find everything
        layout = self.layout(state)
        if state["mode"] != "external":
            log.info(
                "fleet %s: %d hosts in %s mode on %s.0/24",
                state["id"],
                len(state["hosts"]),
                state["mode"],
                state["subnet"],
            )
            network.create_bridge(layout)
            self._open_to_hosts(state)
            for host in self.hosts(state):
                network.add_host(layout, host.index)
                host.store_archive(options.mar)  # fresh mtime: never "stale"
            self._start_hosts(self.hosts(state))
        elif state["front"].get("routing", "batched") != "batched":
            self._check_single_registrations(state)
        if not self.token_file.exists():
            tokens.add(self.token_file, "default")
            log.info("made a token named 'default' in %s", self.token_file)
        self._start_door(state)
        return state

    def _plan(self, options):
        if options.metrics_port:  # before anything is made: a taken port fails the start at once
            if options.metrics_port == options.front_port:
                raise FleetError("the front door's metrics port must differ from its HTTPS port")
            check_port_free(
                options.metrics_port, "the front door's metrics exporter", hint=" (FRONT_METRICS_PORT; 0: no metrics)"
            )
        if options.routing not in ("adaptive", "batched", "single"):
            raise FleetError(f"routing must be adaptive, batched or single, got {options.routing!r}")
        single_workers = 0 if options.routing == "batched" else options.single_workers
        if options.routing != "batched" and single_workers < 1 and not options.external_hosts:
            raise FleetError(
                "adaptive batching needs at least one batch-1 worker per host "
                "(--single-workers N), or turn it off (--batched-only)"
            )
        fleet_id = secrets.token_hex(2)
        run_as = self._mms_user(options)
        if options.external_hosts:
            mode, subnet = "external", ""
        elif options.loopback or not network.namespaces_possible():
            if not options.loopback:
                log.warning(
                    "not root (or no 'ip'): no network namespaces; hosts get loopback addresses "
                    "127.77.x.y on this machine instead"
                )
            mode, subnet = "loopback", network.choose_subnet("loopback")
        else:
            mode, subnet = "netns", network.choose_subnet("netns")
        layout = network.Layout(fleet_id, mode, subnet)
        front_port = options.front_port
        # A given pair, or a self-signed one made once (as start_mms.sh's TLS does); kept as text in the state.
        certificate, key = map(
            str, tls_files(self.dir / "tls", options.certificate, options.key, options.listen_address)
        )
        hosts = []
        if mode == "external":
            upstreams = list(options.external_hosts)
        else:
            taken = {front_port, options.metrics_port}
            inference = free_port(taken)
            taken.add(inference)
            for index in range(1, options.hosts + 1):
                # Each host's own management and metrics ports: unique, so hosts
                # sharing one loopback (the no-root fallback) do not collide.
                management = free_port(taken)
                taken.add(management)
                metrics = free_port(taken)
                taken.add(metrics)
                hosts.append(
                    Host(
                        name=f"h{index}",
                        index=index,
                        address=layout.address(index),
                        inference_port=inference,
                        management_port=management,
                        metrics_port=metrics,
                        run_dir=str(self.dir / f"h{index}"),
                        namespace=layout.namespace(index),
                        workers=options.workers,
                        single_workers=single_workers,
                        batch_size=options.batch_size,
                        run_as=run_as,
                    ).as_dict()
                )
            upstreams = [Host(**row).upstream for row in hosts]
        workers = options.nginx_workers or FLEET_NGINX_WORKERS
        front = FrontSettings(
            listen=f"{options.listen_address}:{front_port}",
            hosts=upstreams,
            certificate=certificate,
            key=key,
            rate=options.rate,
            burst=options.burst,
            body_cap=options.body_cap,
            read_timeout=options.read_timeout,
            workers=workers,
            metrics_log=bool(options.metrics_port),
            routing=options.routing,
            adaptive_threshold=options.adaptive_threshold,
            admission=options.admission,
            retry_budget=options.retry_budget,
            retry_share=options.retry_share,
            retry_floor=options.retry_floor,
        )
        front = dataclasses.asdict(front)
        front["drained"] = []
        return {
            "id": fleet_id,
            "mode": mode,
            "subnet": subnet,
            "hosts": hosts,
            "front": front,
            "metrics_port": options.metrics_port,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    @staticmethod
    def _mms_user(options):
        """The user the hosts' MMS runs as: `options.mms_user` (a system user
        made once when missing) when root starts hosts here; "" otherwise (no
        root: MMS runs as its caller, as everything else does)."""
        if options.external_hosts or not options.mms_user or os.geteuid() != 0:
            return ""
        return users.ensure_system_user(options.mms_user)[0]

    def _open_to_hosts(self, state):
        """The fleet's folder (tokens 0600 and the TLS key stay closed inside) may
        be entered, not listed, by the user the hosts run as: their run
        folders are in it. mkdtemp makes it 0700."""
        if any(host.run_as for host in self.hosts(state)):
            self.dir.chmod(self.dir.stat().st_mode | stat.S_IXOTH)

    def _start_hosts(self, hosts, timeout=300, again=True):
        """Side by side; a host that failed gets one more try on its own (on a
        loaded machine MMS's 30 s limit for a worker to load can run out when
        several hosts load their workers at once)."""
        starting = [(host, host.start()) for host in hosts]
        failed = []
        for host, process in starting:
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                code = "timeout"
            if code != 0:
                failed.append(
                    (
                        host,
                        f"{host.name}: start_mms.sh exited {code}; see {host.run_dir}/start.log:\n"
                        + tail(Path(host.run_dir) / "start.log", 15),
                    )
                )
            else:
                log.info("host %s (%s) is serving: %d READY workers", host.name, host.upstream, host.workers)
        if failed and again:
            for host, reason in failed:
                log.warning("host %s did not start; trying it once more on its own:\n%s", host.name, reason)
                host.stop()
                self._start_hosts([host], timeout, again=False)
        elif failed:
            raise FleetError("\n".join(reason for _, reason in failed))

    @staticmethod
    def _check_single_registrations(state):
        """Hosts run elsewhere must have the batch-1 registration the adaptive
        front door sends lone requests to (a missing one would answer 404)."""
        missing = [
            upstream
            for upstream in state["front"]["hosts"]
            if not answers_smoke_request(f"http://{upstream}{SINGLE_PREDICT_PATH}", timeout=10)
        ]
        if missing:
            raise FleetError(
                f"{', '.join(missing)} do not answer on {SINGLE_PREDICT_PATH}: start them with "
                f"FIZBUZ_SINGLE_WORKERS=2 ./start_mms.sh (adaptive batching), or start the front door "
                f"with --batched-only"
            )

    def _start_door(self, state, timeout=60):
        settings = self.settings(state)
        self.door.write(settings, self.token_file)
        self.door.start(settings.listen)
        wait_until(lambda: self.ready(state)[0] == 200, timeout, "the front door's /ready to say 200")
        log.info("front door ready on https://%s", settings.listen)
        self._start_metrics(state)

    def _start_metrics(self, state):
        """The exporter, when the fleet has metrics and it is not running (also after it died)."""
        port = state.get("metrics_port")
        if port and state["front"].get("metrics_log", True) and front_control.running(self.dir) is None:
            front_control.start(self.dir, self.door, port)
            log.info("front door metrics on %s", metrics_url(port))

    def set_metrics(self, enabled):
        """Metrics log and exporter on or off (a graceful reload); for measuring their cost."""
        state = self.require()
        if not state.get("metrics_port"):
            raise FleetError("this fleet was started without a metrics port")
        if not enabled:
            front_control.stop(self.dir)
        state = self.update_front(metrics_log=bool(enabled))
        if enabled:
            self._start_metrics(state)

    def _heal(self, state):
        """Start again what is not running (a killed host, a killed nginx)."""
        dead = [host for host in self.hosts(state) if not host.serving()]
        for host in dead:
            log.info("host %s is not serving: restarting its MMS", host.name)
            host.stop()
        if dead:
            self._start_hosts(dead)
        if not self.door.running():
            log.info("the front door is not running: starting it")
        self._start_door(state)
        return state

    # ------------------------------------------------------------ front door
    def ready(self, state=None):
        state = state or self.require()
        host, port = state["front"]["listen"].rsplit(":", 1)
        status, _, text = client.request(host, int(port), "GET", "/ready", state["front"]["certificate"], timeout=10)
        return status, text

    def reload(self):
        """Re-read the tokens file and settings; graceful (no request dropped)."""
        state = self.require()
        self.door.write(self.settings(state), self.token_file)
        self.door.reload()
        return state

    def update_front(self, **changes):
        state = self.require()
        state["front"].update(changes)
        try:
            target_map(self.settings(state))  # refuse bad routing settings before they are saved
            check_overload(self.settings(state))
        except ValueError as error:
            raise FleetError(str(error)) from None
        self.save(state)
        return self.reload()

    def drain(self, host, drained=True):
        state = self.require()
        drained_set = set(state["front"]["drained"])
        (drained_set.add if drained else drained_set.discard)(host.upstream)
        return self.update_front(drained=sorted(drained_set))

    # ------------------------------------------------------------ stop
    def stop(self):
        """Every step runs even when an earlier one failed; the state file stays
        (for another try) only if something could not be removed."""
        state = self.load()
        if state is None:
            log.info("no fleet in %s", self.dir)
            return False
        steps = [
            ("the front door's metrics exporter", lambda: front_control.stop(self.dir)),
            ("the front door", self.door.stop),
        ]
        steps += [(f"host {host.name}", host.stop) for host in self.hosts(state)]
        if state["mode"] == "netns":
            steps.append(("the namespaces, veths and bridge", lambda: network.teardown(state["id"])))
        steps.append(("stray MMS processes", self._kill_strays))
        failed = []
        for what, step in steps:
            try:
                step()
            except Exception as error:  # keep going: the other parts must still be removed
                log.error("stopping %s failed: %s", what, error)
                failed.append(what)
        if failed:
            raise FleetError(f"could not stop {', '.join(failed)}; run stop again (state kept in {self.state_file})")
        self.state_file.unlink()
        log.info("fleet %s stopped: processes, namespaces, veths and bridge removed", state["id"])
        return True

    def _kill_strays(self):
        """MMS processes (java frontends, python workers) still running from the
        fleet's folders, e.g. a host that crashed half-way through starting:
        matched by the folder in their command line."""
        end_processes(processes_under(self.dir, names=("java", "python")))

    # ------------------------------------------------------------ reports
    def env_lines(self):
        state = self.require()
        names = tokens.read(self.token_file)
        token = names.get("default") or next(iter(names.values()), "")
        lines = [
            f"export FIZBUZ_URL=https://{state['front']['listen']}",
            # gRPC clients (tritonclient.grpc) take host:port: the same door, HTTP/2
            f"export FIZBUZ_GRPC_URL={state['front']['listen']}",
            f"export FIZBUZ_TOKEN={token}",
            f"export FIZBUZ_CACERT={state['front']['certificate']}",
        ]
        if state.get("metrics_port"):
            lines.append(f"export FIZBUZ_METRICS_URL={metrics_url(state['metrics_port'])}")
        return lines

    def status(self):
        state = self.require()
        lines = [f"fleet {state['id']} ({state['mode']}) in {self.dir}"]
        for host in self.hosts(state):
            frontend = host.frontend()
            description = host.describe() or {}
            pids = {wid: p.pid for wid, p in host.worker_processes().items()}
            drained = " DRAINED" if host.upstream in state["front"]["drained"] else ""
            lines.append(
                f"  host {host.name} {host.upstream}{' ns ' + host.namespace if host.namespace else ''}"
                f"  MMS pid {frontend.pid if frontend else '-'}  model {description.get('modelUrl', '-')}"
                f"{drained}"
            )
            for name, batch_size, delay, _, _ in host.registrations:
                workers = (description if name == MODEL_NAME else host.describe(SINGLE_MODEL_NAME) or {}).get(
                    "workers", []
                )
                lines.append(f"    {name} (batch {batch_size}, delay {delay} ms)")
                for worker in workers:
                    lines.append(
                        f"      worker {worker.get('id')} {worker.get('status')} "
                        f"pid {pids.get(str(worker.get('id')), '-')}"
                    )
            if frontend is None:
                lines.append("      (not running)")
        if state["mode"] == "external":
            lines.append(f"  hosts {', '.join(state['front']['hosts'])} (run elsewhere)")
        master = self.door.master()
        ready, _ = self.ready(state) if master else (None, "")
        lines.append(
            f"  front door https://{state['front']['listen']}  nginx pid {master.pid if master else '-'}"
            f"  workers {[p.pid for p in self.door.workers()]}  /ready {ready}"
        )
        if state.get("metrics_port"):
            exporter = front_control.running(self.dir)
            lines.append(
                f"  metrics {metrics_url(state['metrics_port'])}  exporter pid "
                f"{exporter.pid if exporter else '- (not running: fleet.sh start brings it back)'}"
            )
        front = self.settings(state)
        lines.append(
            f"  routing {front.routing}"
            + (
                f": batch 1 while at most {front.adaptive_threshold} client connections are open, batched above"
                if front.routing == "adaptive"
                else ""
            )
        )
        lines.append(f"  logs: {self.door.logs}, {self.dir}/h*/logs")
        return "\n".join(lines)
