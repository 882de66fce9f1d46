"""A throw-away Prometheus server (Debian's `prometheus` binary, installed by
serving/metrics/setup_prometheus.sh) for tests and the picture: a free port on
loopback, its own config and data folder in a temp folder, a short scrape
interval, stopped by its pid file; plus the few HTTP query-API calls we use."""

import json
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from fizbuz.http_client import call
from fizbuz.lifecycle import LifecycleError, PidFile, free_port, start_server

BINARY = "/usr/bin/prometheus"
SETUP_HINT = "run serving/metrics/setup_prometheus.sh (installs Debian's prometheus)"


def binary():
    found = shutil.which("prometheus") or (BINARY if Path(BINARY).exists() else None)
    if found is None:
        raise LifecycleError(f"the prometheus binary was not found: {SETUP_HINT}")
    return found


class PrivatePrometheus:
    """Prometheus scraping `targets` ("127.0.0.1:PORT" strings) every `interval`."""

    def __init__(self, targets, interval="1s", job="fizbuz-mms"):
        self.targets = list(targets)
        self.interval = interval
        self.job = job
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="fbz-prom-"))
        self.config = self.folder / "prometheus.yml"
        # The config path names this server alone: a reused pid is never taken for it.
        self.pid_file = PidFile(self.folder / "prometheus.pid", str(self.config))
        self.log = self.folder / "prometheus.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def write_config(self):
        # YAML is a superset of JSON, so no YAML writer is needed.
        self.config.write_text(
            json.dumps(
                {
                    "global": {
                        "scrape_interval": self.interval,
                        "scrape_timeout": self.interval,
                        "evaluation_interval": self.interval,
                    },
                    "scrape_configs": [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}],
                },
                indent=2,
            )
        )

    def start(self, timeout=60.0):
        self.write_config()
        command = [
            binary(),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        start_server(command, self.pid_file, self.log, ready=self.ready, what="Prometheus", timeout=timeout)
        return self

    def ready(self):
        return call("GET", f"{self.url}/-/ready", 2)[0] == 200

    def stop(self):
        self.pid_file.stop(grace=5)

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:  # a half-started server is stopped and its folder removed
            self.__exit__()
            raise

    def __exit__(self, *exc):
        self.stop()
        self.remove()

    # ----------------------------------------------------------------- query API

    def api(self, path, **params):
        status, text = call("GET", f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", 10)
        if status != 200:
            raise LifecycleError(f"Prometheus answered {status} to {path} {params}: {text[:300]}")
        return json.loads(text)["data"]

    def query(self, promql):
        """The instant vector of `promql`: [(labels dict, float value)]."""
        return [(item["metric"], float(item["value"][1])) for item in self.api("query", query=promql)["result"]]

    def value(self, promql):
        """The single value of `promql`, or None when it has no sample (yet)."""
        result = self.query(promql)
        return result[0][1] if len(result) == 1 else None

    def query_range(self, promql, start, end, step):
        """{frozen labels: [(unix time, value)]} of `promql` over [start, end]."""
        data = self.api("query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=step)
        return {
            tuple(sorted(item["metric"].items())): [(float(t), float(v)) for t, v in item["values"]]
            for item in data["result"]
        }

    def targets_up(self):
        active = self.api("targets", state="active")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)
