"""The exporter under faults: killed under load (serving must not notice), a
killed worker (counted as a restart, its counts kept, its files folded)."""

import os
import signal

import psutil
import pytest

from fizbuz.lifecycle import wait_until
from serving.mms.metrics import control
from loadtest.background import BackgroundLoad

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # fault runs: kills under load

REQUESTS = "fizbuz_requests_total"


def answered_2xx(mms):
    return mms.scrape().total(REQUESTS, status="2xx")


def test_exporter_listens_on_loopback_only(metrics_mms):
    exporter = control.pid_file(metrics_mms.run).process()
    assert exporter is not None
    listening = {(c.laddr.ip, c.laddr.port) for c in exporter.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", metrics_mms.metrics_port)}


def test_killing_the_exporter_under_load_fails_nothing_and_loses_no_count(metrics_mms):
    before = answered_2xx(metrics_mms)
    exporter = control.pid_file(metrics_mms.run).process()
    with BackgroundLoad(metrics_mms.inference_port, concurrency=16, duration=6) as load:
        # Kill it once the load is visibly flowing (by its own counters).
        wait_until(lambda: answered_2xx(metrics_mms) > before + 200, 60, "the load to get going")
        exporter.send_signal(signal.SIGKILL)
        wait_until(lambda: control.pid_file(metrics_mms.run).process() is None, 30, "the exporter to end")
    summary = load.summary
    assert summary["answered"] > 200
    assert summary["statuses"] == {200: summary["answered"]}
    assert summary["wrong_answers"] == 0 and summary["transport_errors"] == {}

    # `start_mms.sh` on a running server brings a dead exporter back; the
    # workers kept counting in their own files meanwhile.
    result = metrics_mms.script("start_mms.sh")
    assert result.returncode == 0, result.stderr
    assert "starting it again" in result.stdout
    assert control.pid_file(metrics_mms.run).process().pid != exporter.pid
    assert answered_2xx(metrics_mms) == before + summary["answered"]


def test_a_killed_worker_is_a_restart_and_its_counts_are_kept(metrics_mms):
    first = metrics_mms.scrape()
    for n in range(40):  # both workers answer some
        assert metrics_mms.post({"input.1": n}).status_code == 200
    before = metrics_mms.scrape()
    assert before.total(REQUESTS, status="2xx") == first.total(REQUESTS, status="2xx") + 40
    victim_id, victim = sorted(metrics_mms.workers().items())[0]
    os.kill(victim.pid, signal.SIGKILL)

    def restarted():
        now = metrics_mms.scrape()
        return (
            now.total("fizbuz_worker_restarts_total") == before.total("fizbuz_worker_restarts_total") + 1
            and now.total("fizbuz_workers", state="READY") == 2
        ) and now

    after = wait_until(restarted, 120, "the exporter to count the restart and see 2 READY workers")
    assert after.total(REQUESTS, status="2xx") == before.total(REQUESTS, status="2xx")
    assert metrics_mms.workers()[victim_id].pid != victim.pid

    # The dead worker's files were folded into the archive: the folder holds
    # the archives and the live workers' files only.
    folder = control.multiproc_dir(metrics_mms.run)
    wait_until(lambda: not list(folder.glob(f"*_{victim.pid}.db")), 30, "the dead worker's files to be folded")
    live = {str(p.pid) for p in metrics_mms.workers().values()}
    for path in folder.glob("*.db"):
        assert path.stem.rsplit("_", 1)[1] in live | {"archive"}, path.name
