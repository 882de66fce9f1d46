"""Render the front door's nginx.conf from nginx.conf.template and the settings."""

import re
from dataclasses import dataclass, field
from pathlib import Path

from fizbuz.contract import PREDICT_PATH, SINGLE_PREDICT_PATH, SMOKE_INPUT, request_body
from serving.metrics import front_log

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"

# Adaptive batching (issue 13): each host registers the model twice, batched
# (PREDICT_PATH) and batch 1 with no delay (SINGLE_PREDICT_PATH); a request
# that arrives while at most ADAPTIVE_THRESHOLD client connections are open
# goes to the batch-1 one, anything busier to the batched one. The threshold
# was found by bench/adaptive.py (bench/results/adaptive/): the largest
# concurrency at which batch 1 beat batching through the front door.
ADAPTIVE_THRESHOLD = 8
ROUTINGS = ("adaptive", "batched", "single")  # "single": batch 1 only, for the bench's comparison


@dataclass
class FrontSettings:
    listen: str                       # "127.0.0.1:8443"
    hosts: list                       # ["10.0.0.2:8080", ...]
    certificate: str
    key: str
    drained: set = field(default_factory=set)  # hosts marked down (rolling update)
    rate: int = 50000                 # req/s per token: above what this box serves
    burst: int = 10000
    body_cap: str = "4k"
    read_timeout: float = 3.0         # s; MMS answers in ms, a lost job never
    connect_timeout: float = 1.0
    workers: str = "auto"
    metrics_log: bool = True          # one line per request for the metrics exporter
    routing: str = "adaptive"         # one of ROUTINGS; "batched": the batch-1 registration is never used
    adaptive_threshold: int = ADAPTIVE_THRESHOLD

    def attempt_bound(self):
        """Seconds a reply can take at most: 2 tries, then one retry for 507."""
        return 3 * (self.connect_timeout + self.read_timeout)


def _server(host, settings):
    flags = " down" if host in settings.drained else ""
    # max_fails=2: one dead worker's batch alone does not take a host out.
    return f"        server {host} max_fails=2 fail_timeout=2s{flags};"


def _group(name, primaries, settings, keepalive):
    """An upstream group. Every host in rotation is also a backup that is never
    marked failed: when failures took all the primaries out for fail_timeout
    (two hosts each losing a worker within 2 s), nginx tries the backups
    instead of answering "no live upstreams"."""
    live = [host for host in settings.hosts if host not in settings.drained]
    lines = [_server(host, settings) for host in primaries]
    lines += [f"        server {host} backup max_fails=0;" for host in live]
    return f"    upstream {name} {{\n" + "\n".join(lines) + f"\n        keepalive {keepalive};"


def upstream_groups(settings):
    if not settings.hosts:
        raise ValueError("the front door needs at least one host")
    if not [host for host in settings.hosts if host not in settings.drained]:
        raise ValueError("cannot drain every host")
    return _group("fizbuz_hosts", settings.hosts, settings, keepalive=64)


def retry_groups(settings):
    """For each host, an upstream group of the *other* hosts in rotation, and a
    map from the failed host's address to it: the 507 retry (an error_page, not
    proxy_next_upstream) then goes to another host. With no other host in
    rotation it goes back to the whole group."""
    groups, entries = [], []
    for index, host in enumerate(settings.hosts, 1):
        others = [h for h in settings.hosts if h != host and h not in settings.drained]
        if not others:
            continue
        groups.append(_group(f"fizbuz_not_{index}", others, settings, keepalive=16) + "\n    }")
        entries.append(f'        "{host}" fizbuz_not_{index};')
    mapping = "    map $upstream_addr $fizbuz_retry_group {\n        default fizbuz_hosts;\n"
    mapping += "".join(entry + "\n" for entry in entries) + "    }"
    return "\n".join(groups + [mapping])


def metrics_access_log(settings, prefix):
    if not settings.metrics_log:
        return "    # (metrics log off)"
    return f"    access_log {prefix}/logs/{front_log.LOG_NAME} fizbuz_metrics buffer=64k flush=1s;"


def target_map(settings):
    """nginx map from the live client connection count ($connections_active,
    this request's own connection included, every nginx worker counted) to the
    upstream path: the batch-1 registration while quiet, the batched one when busy."""
    if settings.routing not in ROUTINGS:
        raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {settings.routing!r}")
    threshold = int(settings.adaptive_threshold)
    if settings.routing == "adaptive" and not 1 <= threshold <= 4096:
        raise ValueError(f"the adaptive threshold must be 1..4096 connections, got {threshold}")
    default = SINGLE_PREDICT_PATH if settings.routing == "single" else PREDICT_PATH
    lines = [f"    map $connections_active $fizbuz_target_path {{", f"        default {default};"]
    if settings.routing == "adaptive":
        lines += [f"        {count} {SINGLE_PREDICT_PATH};" for count in range(0, threshold + 1)]
    return "\n".join(lines + ["    }"])


def render(settings, prefix):
    values = {
        "PREFIX": str(prefix), "WORKERS": settings.workers, "LISTEN": settings.listen,
        "CERT": settings.certificate, "KEY": settings.key, "RATE": str(settings.rate),
        "BURST": str(settings.burst), "BODY_CAP": settings.body_cap,
        "READ_TIMEOUT": f"{settings.read_timeout:g}", "CONNECT_TIMEOUT": f"{settings.connect_timeout:g}",
        "UPSTREAM_GROUP": upstream_groups(settings), "RETRY_GROUPS": retry_groups(settings),
        "TARGET_MAP": target_map(settings),
        "PREDICT_PATH": PREDICT_PATH, "SMOKE_BODY": request_body(SMOKE_INPUT).decode(),
        "METRICS_LOG_FORMAT": front_log.nginx_log_format(),
        "METRICS_ACCESS_LOG": metrics_access_log(settings, prefix),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise ValueError(f"unfilled template fields: {leftover}")
    return text
