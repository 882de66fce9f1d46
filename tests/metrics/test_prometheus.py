"""A real Prometheus scrapes a real MMS's exporter; what it reads back through
its HTTP query API equals what the test sent."""

import concurrent.futures

import pytest

from fizbuz.lifecycle import wait_until
from fizbuz import answers
from fizbuz_codec import MAX_INPUT

pytestmark = pytest.mark.e2e

GOOD, BAD = 600, 45
REQUESTS_2XX = 'sum(fizbuz_requests_total{status="2xx"})'
REQUESTS_4XX = 'sum(fizbuz_requests_total{status="4xx"})'
BATCHES = "sum(fizbuz_batch_size_count)"
BATCHES_OF_ONE = 'sum(fizbuz_batch_size_bucket{le="1.0"})'
REQUESTS_IN_BATCHES = "sum(fizbuz_batch_size_sum)"


def settled_value(prometheus, promql, timeout=60):
    """The value once Prometheus has one (the first scrape may still be coming)."""
    sampled = wait_until(
        lambda: [v for v in [prometheus.value(promql)] if v is not None], timeout, f"a sample of {promql}"
    )
    return sampled[0]


def wait_for_value(prometheus, promql, expected, timeout=60):
    """Poll until Prometheus's latest scrape reaches `expected`; return what it read."""
    wait_until(
        lambda: (prometheus.value(promql) or 0) >= expected,
        timeout,
        f"{promql} to reach {expected} (now {prometheus.value(promql)})",
        interval=0.25,
    )
    return prometheus.value(promql)


def send_mixed_load(mms):
    """GOOD right requests and BAD bad ones, interleaved, from 32 threads at once."""
    jobs = [("good", n % (MAX_INPUT + 1)) for n in range(GOOD)]
    for k in range(BAD):
        jobs.insert(k * (GOOD // BAD), ("bad", k))

    def ask(job):
        kind, n = job
        if kind == "good":
            response = mms.post({"input.1": n})
            return answers.reply_is_right(n, response.status_code, response.content)
        return mms.post({"input.1": MAX_INPUT + 1 + n}).status_code == 400

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        assert all(pool.map(ask, jobs))


def test_prometheus_reads_back_the_counts_sent_and_batches_above_one(metrics_mms, prometheus):
    wait_until(prometheus.targets_up, 60, "Prometheus to scrape the exporter")
    # Nothing else talks to this server, so the first scraped values are the baseline
    # (start_mms.sh's own smoke request is in it).
    before = {
        q: settled_value(prometheus, q)
        for q in (REQUESTS_2XX, REQUESTS_4XX, BATCHES, BATCHES_OF_ONE, REQUESTS_IN_BATCHES)
    }

    send_mixed_load(metrics_mms)

    assert wait_for_value(prometheus, REQUESTS_2XX, before[REQUESTS_2XX] + GOOD) == before[REQUESTS_2XX] + GOOD
    assert wait_for_value(prometheus, REQUESTS_4XX, before[REQUESTS_4XX] + BAD) == before[REQUESTS_4XX] + BAD
    # Every request went through exactly one batch.
    assert (
        wait_for_value(prometheus, REQUESTS_IN_BATCHES, before[REQUESTS_IN_BATCHES] + GOOD + BAD)
        == before[REQUESTS_IN_BATCHES] + GOOD + BAD
    )
    batches = prometheus.value(BATCHES) - before[BATCHES]
    batches_above_one = batches - (prometheus.value(BATCHES_OF_ONE) - before[BATCHES_OF_ONE])
    assert 0 < batches < GOOD + BAD  # fewer batches than requests: some were shared
    assert batches_above_one > 0  # the distribution reaches above 1
    assert prometheus.value("histogram_quantile(0.99, sum by (le) (fizbuz_batch_size_bucket))") > 1


def test_prometheus_sees_the_workers_and_the_stage_times(metrics_mms, prometheus):
    wait_until(prometheus.targets_up, 60, "Prometheus to scrape the exporter")
    assert settled_value(prometheus, 'sum(fizbuz_workers{state="READY"})') == 2
    assert settled_value(prometheus, "count(fizbuz_worker_resident_memory_bytes)") == 2
    assert settled_value(prometheus, "min(fizbuz_worker_resident_memory_bytes)") > 10 * 2**20
    stages = {
        labels["stage"]: value
        for labels, value in prometheus.query("sum by (stage) (fizbuz_handler_stage_seconds_count)")
    }
    assert set(stages) == {"preprocess", "inference", "postprocess"}
    assert len(set(stages.values())) == 1  # each batch times all three stages
    assert prometheus.value("sum(fizbuz_handler_seconds_count)") == stages["inference"]
