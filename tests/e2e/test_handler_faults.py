"""A handler fault under a real MMS: the whole batch gets padded 500s with a
message, the worker survives, and the next request is answered.

The archive under test is the real one plus a test-only handler module that
wraps fizbuz_service and makes the forward pass fail on any batch holding the
poison input; its manifest points MMS at that module."""

import concurrent.futures
import json
import re
import threading
import zipfile

import pytest
import requests

from fizbuz.contract import MAR_FILE_NAME
from fizbuz.lifecycle import wait_until
from serving.mms.private import PrivateMms

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a fault run: its own MMS with a faulty handler

POISON = 1000
FAULTY_HANDLER = f'''
"""Test-only: fizbuz_service whose forward pass fails on a batch holding {POISON}."""
import logging
import fizbuz_service
from fizbuz_service import handle  # noqa: F401  (MMS calls faulty_service:handle)

_forward = fizbuz_service.MXNetModelService.inference


def failing_forward(self, requests):
    numbers = [n for r in requests if r.numbers is not None for n in r.numbers.tolist()]
    if {POISON} in numbers:
        logging.getLogger("faulty").warning("injecting a fault into a batch of %d", len(requests))
        raise RuntimeError("injected fault")
    return _forward(self, requests)


fizbuz_service.MXNetModelService.inference = failing_forward
'''


@pytest.fixture(scope="module")
def faulty_store(mar_path, tmp_path_factory):
    store = tmp_path_factory.mktemp("faulty_store")
    with zipfile.ZipFile(mar_path) as source, zipfile.ZipFile(store / MAR_FILE_NAME, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"]["handler"] = "faulty_service:handle"
                data = json.dumps(manifest, indent=2)
            target.writestr(item, data)
        target.writestr("faulty_service.py", FAULTY_HANDLER)
    return store


def post_together(server, bodies):
    """Send `bodies` at once from one thread each, so they share a batch."""
    start = threading.Barrier(len(bodies))

    def send(body):
        with requests.Session() as session:
            start.wait(timeout=30)
            return session.post(server.url, json=body, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_a_failing_full_batch_gets_500s_and_the_worker_survives(faulty_store):
    with PrivateMms(model_store=faulty_store, batch_size=16, max_batch_delay=1000, workers=1) as server:
        pids_before = server.worker_pids()
        assert len(pids_before) == 1
        log = server.logs / "mms_log.log"

        def failed_batches(total):
            """The batch sizes the handler logged a failure for, once they add up to `total`
            (MMS copies worker output into its log)."""
            text = log.read_text(errors="replace") if log.exists() else ""
            sizes = [int(size) for size in re.findall(r"handler failed on a batch of (\d+)", text)]
            return sizes if sum(sizes) == total and "RuntimeError: injected fault" in text else None

        # How MMS groups 16 requests sent at once depends on when each arrives: send bursts
        # (at most 5) until one became a batch past 8 requests, the case whose MMS-built 503
        # frame would have killed the worker. Each burst is checked whole.
        for burst in range(1, 6):
            replies = post_together(server, [{"input.1": POISON}] * 16)
            assert [reply.status_code for reply in replies] == [500] * 16
            for reply in replies:
                body = json.loads(reply.text)
                assert body["code"] == 500 and "RuntimeError" in body["error"], reply.text
            assert server.worker_pids() == pids_before  # not "Worker died."
            assert len(server.ready_workers()) == 1
            assert requests.post(server.url, json={"input.1": 14}, timeout=30).json() == {"next_number": "FizzBuzz"}
            sizes = wait_until(
                lambda total=16 * burst: failed_batches(total), 30, "the handler's failures in mms_log.log"
            )
            if max(sizes) > 8:
                break
        assert max(sizes) > 8, sizes
