"""A real MMS with its metrics exporter, and a real Prometheus scraping it:
each on free ports in its own temp folder, stopped by PID on leaving."""

import pytest
import requests
import requests.adapters

from fizbuz.lifecycle import LifecycleError
from serving.metrics.prometheus import PrivatePrometheus
from serving.metrics.scrape import scrape
from serving.mms.private import PrivateMms


class MetricsMms(PrivateMms):
    def __init__(self, model_store, **settings):
        super().__init__(model_store=model_store, **settings)
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))

    def post(self, body, content_type="application/json"):
        data = body if isinstance(body, (bytes, str)) else requests.compat.json.dumps(body)
        return self.session.post(self.url, data=data, headers={"Content-Type": content_type}, timeout=30)

    def scrape(self):
        return scrape(self.metrics_url)


@pytest.fixture(scope="session")
def metrics_mms(model_store):
    """One server with start_mms.sh's defaults (metrics on) for this folder's tests;
    tests that kill a worker or the exporter wait until it is whole again."""
    server = MetricsMms(model_store)
    try:
        server.start()
    except LifecycleError as error:
        server.remove()
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture(scope="session")
def prometheus(metrics_mms):
    # A missing binary fails with the set-up script's name in the error.
    with PrivatePrometheus([f"127.0.0.1:{metrics_mms.metrics_port}"], interval="1s") as server:
        yield server
