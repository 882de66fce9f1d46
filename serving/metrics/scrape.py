"""Read an exporter's /metrics into plain numbers (for tests, the picture and
the bench): {(sample name, frozenset of label items): value}."""

from prometheus_client.parser import text_string_to_metric_families

from fizbuz.http_client import call
from fizbuz.lifecycle import LifecycleError


def parse(text):
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(url, timeout=5.0):
    status, text = call("GET", url, timeout)
    if status != 200:
        raise LifecycleError(f"{url} answered {status}: {text[:200]}")
    return Samples(parse(text))


class Samples(dict):
    def total(self, name, **labels):
        """The sum of `name`'s samples whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(value for (sample, items), value in self.items() if sample == name and wanted <= items)
