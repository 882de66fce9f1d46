"""A real MMS, started by the real start_mms.sh on free ports in a temp run folder
(serving.mms.private.PrivateMms, the one throw-away server of tests, bench and
fault tools).

Nothing here touches a server the user may be running: the ports are free ones
chosen now, TMPDIR/TEMP/logs live in the server's own folder, and teardown stops
the server by the pid file in that folder (and by PID if the script fails).
"""

import json

import pytest
import requests
import requests.adapters

from fizbuz import settings as fizbuz_settings
from fizbuz.lifecycle import LifecycleError
from serving.mms.private import PrivateMms


class MmsServer(PrivateMms):
    """A PrivateMms with a requests session for the tests' traffic."""

    def __init__(self, model_store, **settings):
        super().__init__(model_store=model_store, **settings)
        self.session = requests.Session()
        # Room for the concurrent tests' threads to keep their connections.
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))

    def start(self):
        try:
            self.start_output = super().start()
            return self.start_output
        except LifecycleError as error:
            pytest.fail(str(error))

    def post(self, body, content_type="application/json", **kwargs):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": content_type} if content_type else {}
        return self.session.post(self.url, data=data, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="session")
def mms(model_store):
    """One server for the tests that leave it as they found it: start_mms.sh defaults
    (its warm-up too, which tests/conftest.py turns off for every other server)."""
    server = MmsServer(model_store, mms_warmup=fizbuz_settings.default("mms_warmup"))
    server.start()
    yield server
    server.stop()
    server.remove()


@pytest.fixture
def fresh_mms(model_store):
    """A server of the test's own, for tests that scale, kill or stop it."""
    servers = []

    def make(start=True, **settings):
        server = MmsServer(model_store, **settings)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()
        server.remove()
