"""Rolling model update: one host at a time, drained at the front door while
its MMS unregisters the old archive and registers the new one (under each of
the host's registrations: batched, and batch 1 when adaptive batching is on).

A host goes back into rotation only after all its workers are READY and it
answers every input 0..1022 right. If a host fails that, it is put back on its
previous archive, and the hosts already updated are rolled back too.
"""

import hashlib
import logging
from pathlib import Path

from fizbuz.contract import MODEL_NAME
from fizbuz.lifecycle import wait_until
from fizbuz.errors import FizbuzError

log = logging.getLogger(__name__)


class RolloutError(FizbuzError):
    pass


def versioned_name(mar):
    digest = hashlib.sha256(Path(mar).read_bytes()).hexdigest()[:12]
    return f"{MODEL_NAME}-{digest}.mar"


def switch_host(fleet, host, mar_name, timeout=120):
    """Drained host: register `mar_name` (already in its model store) and check it."""
    fleet.drain(host)  # returns once nginx's old workers finished their requests
    host.unregister()
    host.register(mar_name, timeout)
    wait_until(host.all_workers_ready, timeout, f"{host.name}'s workers (every registration) to be READY")
    wrong = host.wrong_answers()
    if wrong:
        raise RolloutError(f"{host.name} answers {len(wrong)} inputs wrongly with {mar_name}, e.g. {wrong[0]}")
    # A restart of this host (start_mms.sh) registers MAR_FILE_NAME: make it this version.
    host.store_archive(host.model_store / mar_name)


def _record(fleet, host, mar_name, previous):
    state = fleet.require()
    for row in state["hosts"]:
        if row["name"] == host.name:
            row["mar"], row["previous_mar"] = mar_name, previous
    fleet.save(state)


def _keep_current(host):
    """Keep the archive registered now under a versioned name, for a rollback."""
    current = host.model_store / host.mar
    name = versioned_name(current)
    if not (host.model_store / name).exists():
        host.store_archive(current, name)
    return name


def update_hosts(fleet, target_for):
    """Move each host to target_for(host) (a file name in its store). On a
    failure, put that host and the ones done before back, then raise."""
    state = fleet.require()
    if state["mode"] == "external":
        raise RolloutError("a rollout needs each host's management API: run it on the hosts themselves")
    if len(state["hosts"]) < 2:
        raise RolloutError("a rolling update drains one host while the others serve: it needs 2 hosts or more")
    done = []
    for host in fleet.hosts(state):
        old = _keep_current(host)
        target = target_for(host)
        log.info("%s: draining, then %s -> %s", host.name, old, target)
        try:
            switch_host(fleet, host, target)
        except Exception as error:  # whatever went wrong: put hosts back, then re-raise
            log.error("%s failed: %s; putting it back on %s", host.name, error, old)
            _restore(fleet, host, old)
            for earlier, earlier_old in reversed(done):
                log.info("rolling %s back to %s", earlier.name, earlier_old)
                _restore(fleet, earlier, earlier_old)
            raise RolloutError(f"rollout stopped at {host.name} and rolled back: {error}") from error
        _record(fleet, host, target, previous=old)
        fleet.drain(host, drained=False)
        log.info("%s: serving %s again", host.name, target)
        done.append((host, old))


def _restore(fleet, host, old):
    try:
        switch_host(fleet, host, old)
        _record(fleet, host, old, previous=None)
    finally:
        fleet.drain(host, drained=False)


def rollout(fleet, mar):
    mar = Path(mar)
    if not mar.is_file():
        raise RolloutError(f"{mar} does not exist")
    name = versioned_name(mar)

    def stage(host):
        if not (host.model_store / name).exists():
            host.store_archive(mar, name)
        return name

    update_hosts(fleet, stage)
    log.info("every host serves %s", name)


def rollback(fleet):
    missing = [h.name for h in fleet.hosts(fleet.require()) if not h.previous_mar]
    if missing:
        raise RolloutError(f"no previous archive recorded for {missing}: nothing to roll back to")
    update_hosts(fleet, lambda host: host.previous_mar)
    log.info("every host is back on its previous archive")
