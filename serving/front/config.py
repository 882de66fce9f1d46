"""Render the front door's nginx.conf from nginx.conf.template and the settings.

One template for both front doors: the fleet's (static upstream groups of
known hosts, files under its prefix) and the container stack's (hosts looked
up in Swarm's DNS at request time, files where the image gets them)."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import fizbuz_v2
from fizbuz import settings as fizbuz_settings
from fizbuz.contract import PREDICT_PATH, SINGLE_PREDICT_PATH, SMOKE_INPUT, request_body
from serving.front.metrics import log as front_log

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
DOOR_JS = Path(__file__).resolve().parent / "door.js"  # the v2/gRPC routing, run by njs
NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"  # Debian's libnginx-mod-http-js
# v2 and gRPC bodies carry up to fizbuz_v2.MAX_NUMBERS numbers; their replies,
# with every output as JSON text, stay well under the reply cap.
V2_BODY_CAP = "64k"
V2_REPLY_CAP = "256k"
# How door.js's calls reach a host: what the handler reads (fizbuz_service.py),
# from the subrequest's arguments, which only door.js sets (the location is internal).
CALL_HEADERS = (
    ("Connection", '""'),
    ("Authorization", '""'),
    ("Content-Type", "application/octet-stream"),  # MMS hands the handler the raw bytes
    ("Content-Encoding", '""'),
    (fizbuz_v2.PROTOCOL_HEADER, "$arg_protocol"),
    (fizbuz_v2.CALL_HEADER, "$arg_call"),
    (fizbuz_v2.MODEL_HEADER, "$arg_model"),
    (fizbuz_v2.VERSION_HEADER, "$arg_version"),
    (fizbuz_v2.ENCODING_HEADER, "$http_content_encoding"),
    (fizbuz_v2.HEADER_LENGTH_HEADER, "$http_inference_header_content_length"),
)
# Deadlines (issue 23): when the request arrived (nginx's $msec, seconds with ms)
# and the client's budget; every proxied request carries them, the door's calls too.
DEADLINE_HEADERS = (
    (fizbuz_v2.RECEIVED_HEADER, "$msec"),
    (fizbuz_v2.TIMEOUT_HEADER, "$http_timeout_ms"),
)
CALL_HEADERS += DEADLINE_HEADERS + ((fizbuz_v2.GRPC_TIMEOUT_HEADER, "$http_grpc_timeout"),)

# Adaptive batching (issue 13): each host registers the model twice, batched
# (PREDICT_PATH) and batch 1 with no delay (SINGLE_PREDICT_PATH); a request
# that arrives while at most ADAPTIVE_THRESHOLD client connections are open
# goes to the batch-1 one, anything busier to the batched one. The threshold
# was found by bench/adaptive.py (bench/results/adaptive/): the largest
# concurrency at which batch 1 beat batching through the front door.
ADAPTIVE_THRESHOLD = fizbuz_settings.default("adaptive_threshold")
ROUTINGS = ("adaptive", "batched", "single")  # "single": batch 1 only, for the bench's comparison

# Door hardening (issue 22). TLS 1.2's suites: Mozilla's "intermediate"
# profile without its DHE ones: ECDHE key exchange (forward secrecy) and AEAD
# ciphers only; no static-RSA, no CBC. TLS 1.3's suites are all of that kind.
SSL_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
WORKER_CONNECTIONS = 4096  # the template's events block
# A proxied request holds two descriptors (client, host); logs and files a few more.
RLIMIT_NOFILE = 2 * WORKER_CONNECTIONS + 256
# Overload (issue 23). Admission control: at most ADMISSION requests in flight
# on each host entry (nginx's max_conns, shared by every nginx worker through
# the upstream's zone); a request that finds every host at its cap is answered
# 503 + Retry-After by the front door at once, and never reaches a host. A host
# with W workers of batch B keeps W x B requests busy; the cap leaves room for
# a queue of a few batches, a bounded latency (docs/overload.md). Each host
# appears twice in the group (primary, and a backup never marked failed), so
# the bound per host is 2 x ADMISSION.
ADMISSION = fizbuz_settings.default("admission")
# The retry budget: a failed try (500, 502, 504, 507) is tried once more on
# another host only while fewer than RETRY_BUDGET retries are in flight to it
# (max_conns on the retry groups); a request refused for load is never retried.
RETRY_BUDGET = fizbuz_settings.default("retry_budget")
RETRY_AFTER = 1  # seconds, on every 429 and 503 the front door answers
# ... and a share of recent successes (retry_budget.lua, run by Debian's Lua
# module for nginx): over the last RETRY_WINDOW seconds, retries granted stay
# within RETRY_SHARE x successes + RETRY_FLOOR x RETRY_WINDOW; past it a failed
# try is answered 503 + Retry-After instead of being retried. The floor lets a
# quiet door retry a worker's death all the same. Njs 0.7.9 keeps no state
# between requests, hence Lua's shared dict (docs/overload.md).
RETRY_SHARE = fizbuz_settings.default("retry_share")
RETRY_FLOOR = fizbuz_settings.default("retry_floor")
RETRY_WINDOW = 10  # seconds of successes and retries the budget looks back on
LUA_MODULES = (
    "/usr/lib/nginx/modules/ndk_http_module.so",  # libnginx-mod-http-ndk, which Lua needs
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
)  # libnginx-mod-http-lua
RETRY_BUDGET_LUA = Path(__file__).resolve().parent / "retry_budget.lua"


@dataclass
class FrontSettings:
    listen: str  # "127.0.0.1:8443"
    hosts: list  # ["10.0.0.2:8080", ...]
    certificate: str
    key: str
    drained: set = field(default_factory=set)  # hosts marked down (rolling update)
    rate: int = fizbuz_settings.default("rate")  # req/s per token: above what this box serves
    burst: int = fizbuz_settings.default("burst")
    body_cap: str = fizbuz_settings.default("body_cap")
    read_timeout: float = fizbuz_settings.default("read_timeout")  # s; MMS answers in ms, a lost job never
    connect_timeout: float = 1.0
    workers: str = "auto"  # the stack's front door has a container of its own; the fleet's says 1
    metrics_log: bool = True  # one line per request for the metrics exporter
    routing: str = "adaptive"  # one of ROUTINGS; "batched": the batch-1 registration is never used
    adaptive_threshold: int = ADAPTIVE_THRESHOLD
    # Instead of `hosts`: one DNS name for every host ("tasks.fizbuz_mms:8080",
    # Swarm's healthy tasks), looked up at request time, as tasks come and go.
    dns_hosts: str = ""
    dns_keepalive: bool = True  # the name's answer as an upstream group (front_tasks.sh), not per request
    resolver: str = "127.0.0.11"  # Docker's embedded DNS (dns_keepalive off)
    # Files outside the prefix (a container gets them from Swarm); "": under the prefix.
    tokens_map: str = ""
    error_log: str = ""  # "stderr" in a container
    door_js: str = ""  # "": serving/front/door.js
    # Door hardening (issue 22): per client address, for requests without a
    # valid token: requests in flight, req/s and burst; and how long nginx
    # waits for a client's headers (the TLS handshake included) or next body bytes.
    anonymous_connections: int = 32
    anonymous_rate: int = 20
    anonymous_burst: int = 40
    client_timeout: float = 5.0
    admission: int = ADMISSION  # requests in flight per host entry; 0: no admission control
    retry_budget: int = RETRY_BUDGET  # retries in flight per host entry of a retry group; 0: unbounded
    retry_after: int = RETRY_AFTER
    # The share budget: retries per recent success, and retries/s allowed
    # whatever the successes; share 0: off (no Lua module loaded). The container
    # stack's door (dns_hosts) has no retry location of its own: never on there.
    retry_share: float = RETRY_SHARE
    retry_floor: float = RETRY_FLOOR
    log_buffer: str = "64k"  # each access log's buffer (written when full or after flush=1s)

    def attempt_bound(self):
        """Seconds a reply can take at most: 2 tries, then one retry for 507."""
        return 3 * (self.connect_timeout + self.read_timeout)


def _cap(cap):
    """A server's max_conns (issue 23's admission control and retry budget); none when 0."""
    return f" max_conns={cap}" if cap else ""


def _server(host, settings, cap=0):
    flags = " down" if host in settings.drained else ""
    # max_fails=2: one dead worker's batch alone does not take a host out.
    return f"        server {host} max_fails=2 fail_timeout=2s{_cap(cap)}{flags};"


def _group(name, primaries, settings, keepalive, extra=(), cap=0):
    """An upstream group. Every host in rotation is also a backup that is never
    marked failed: when failures took all the primaries out for fail_timeout
    (two hosts each losing a worker within 2 s), nginx tries the backups
    instead of answering "no live upstreams". With a cap (max_conns), the group
    gets a zone: the in-flight counts are then shared by every nginx worker."""
    live = [host for host in settings.hosts if host not in settings.drained]
    lines = [f"        zone {name} 64k;"] if cap else []
    lines += [_server(host, settings, cap) for host in primaries]
    lines += [f"        server {host} backup max_fails=0{_cap(cap)};" for host in live]
    lines += [f"        keepalive {keepalive};", *extra]
    return f"    upstream {name} {{\n" + "\n".join(lines) + "\n    }"


def check_overload(settings):
    """Refuse admission and retry-budget settings nginx would misread."""
    for name in ("admission", "retry_budget"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100000:
            raise ValueError(f"{name} must be a whole number 0..100000 (0: off), got {value!r}")
    if not re.fullmatch(r"[1-9][0-9]{0,3}k", str(settings.log_buffer)):
        raise ValueError(f"log_buffer must be like 64k (1k..9999k), got {settings.log_buffer!r}")
    for name, high in (("retry_share", 1.0), ("retry_floor", 1000.0)):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            raise ValueError(f"{name} must be a number 0..{high:g}, got {value!r}")
    if (
        isinstance(settings.retry_after, bool)
        or not isinstance(settings.retry_after, int)
        or not 1 <= settings.retry_after <= 3600
    ):
        raise ValueError(f"retry_after must be 1..3600 seconds, got {settings.retry_after!r}")


def upstream_groups(settings):
    if not settings.hosts:
        raise ValueError("the front door needs at least one host")
    if not [host for host in settings.hosts if host not in settings.drained]:
        raise ValueError("cannot drain every host")
    return _group(
        "fizbuz_hosts",
        settings.hosts,
        settings,
        keepalive=64,
        extra=("        keepalive_requests 100000;", "        keepalive_timeout 60s;"),
        cap=settings.admission,
    )


def retry_groups(settings):
    """For each host, an upstream group of the *other* hosts in rotation, and a
    map from the failed host's address to it: the 507 retry (an error_page, not
    proxy_next_upstream) then goes to another host. With no other host in
    rotation it goes back to every host in rotation. Each group caps its
    entries at the retry budget (issue 23)."""
    groups, entries = [], []
    live = [host for host in settings.hosts if host not in settings.drained]
    for index, host in enumerate(settings.hosts, 1):
        others = [h for h in live if h != host]
        if not others:
            continue
        groups.append(_group(f"fizbuz_not_{index}", others, settings, keepalive=16, cap=settings.retry_budget))
        entries.append(f'        "{host}" fizbuz_not_{index};')
    groups.append(_group("fizbuz_retry_any", live, settings, keepalive=16, cap=settings.retry_budget))
    mapping = "    map $upstream_addr $fizbuz_retry_group {\n        default fizbuz_retry_any;\n"
    mapping += "".join(entry + "\n" for entry in entries) + "    }"
    return "\n".join(groups + [mapping])


@dataclass(frozen=True)
class Upstream:
    """How requests reach the hosts: the template's upstream fields."""

    blocks: str  # http level: upstream groups, or the resolver
    hosts: str  # proxy_pass's host part
    tries: int  # proxy_next_upstream_tries, every location
    retry_policy: str  # the 507 retry's own next-upstream rule and errors
    first_try: str = ""  # the first try's next-upstream rule and error pages; {retry}: the retry location


# Issue 23: the fleet's first try moves on to another host by itself only when
# the connection never carried the request (a dead host did no work); any other
# failed try goes to the retry location, within the retry budget; a host's 503
# (refused for load, or the request's deadline passed) and a try that found
# every host at its cap are not retried.
STATIC_FIRST_TRY = """            proxy_next_upstream error non_idempotent;
            proxy_next_upstream_tries {tries};
            error_page 500 502 504 507 = {retry};"""


def static_upstream(settings):
    """Known hosts (the fleet): upstream groups with keepalive; the 507 retry
    goes to a group of every host but the one that failed."""
    blocks = (
        upstream_groups(settings)
        + "\n\n    # The 507 retry's target: every host but the one that failed.\n"
        + retry_groups(settings)
    )
    tries = 2
    policy = (
        "            # Only a connection that never carried the request moves on again.\n"
        "            proxy_next_upstream error non_idempotent;\n"
        f"            proxy_next_upstream_tries {tries};\n"
        "            error_page 502 503 504 = @no_host;"
    )
    return Upstream(
        blocks=blocks,
        hosts="fizbuz_hosts",
        tries=tries,
        retry_policy=policy,
        first_try=STATIC_FIRST_TRY.replace("{tries}", str(tries)),
    )


TASKS_FILE = "tasks.conf"  # under the prefix: the stack door's server lines (front_tasks.sh)
TASKS_GROUP = "fizbuz_tasks"


def dns_upstream(settings, prefix):
    """One DNS name for every host (the container stack: Swarm's tasks come and
    go). Kept alive (the default): an upstream group whose server lines are a
    file the front image's entry (serving/containers/front_tasks.sh) rewrites
    from the name's answer, reloading nginx when it changes; nginx keeps
    connections to the tasks. Per request (dns_keepalive off): the name in
    variables, looked up at request time (answers kept 1 s), no connection
    kept. Either way a try on a task that left moves on to the next address;
    the 507 retry goes to the same tasks."""
    if settings.hosts:
        raise ValueError("give the front door either hosts or one DNS name for them, not both")
    if settings.dns_keepalive:
        blocks = (
            "    # The hosts: Swarm's healthy tasks, written by front_tasks.sh from\n"
            f"    # {settings.dns_hosts} and reloaded on change: connections kept alive.\n"
            f"    upstream {TASKS_GROUP} {{\n"
            "        # In-flight counts shared by every nginx worker: the max_conns\n"
            "        # (admission control) front_tasks.sh puts on the server lines.\n"
            f"        zone {TASKS_GROUP} 64k;\n"
            f"        include {prefix}/{TASKS_FILE};\n"
            "        keepalive 64;\n"
            "        keepalive_requests 100000;\n"
            "        keepalive_timeout 60s;\n"
            "    }\n"
            f"    map $host $fizbuz_hosts {{ default {TASKS_GROUP}; }}\n"
            f"    map $host $fizbuz_retry_group {{ default {TASKS_GROUP}; }}"
        )
    else:
        blocks = (
            "    # The hosts: one DNS name, looked up at request time (answers kept 1 s).\n"
            f"    resolver {settings.resolver} valid=1s ipv6=off;\n"
            "    resolver_timeout 2s;\n"
            f"    map $host $fizbuz_hosts {{ default {settings.dns_hosts}; }}\n"
            f"    map $host $fizbuz_retry_group {{ default {settings.dns_hosts}; }}"
        )
    tries = 3  # during a rolling update (start-first) the name lists a third task
    policy = (
        "            proxy_next_upstream error timeout non_idempotent http_500 http_502 http_503 http_504;\n"
        f"            proxy_next_upstream_tries {tries};\n"
        "            error_page 502 503 504 507 = @no_host;"
    )
    first_try = (
        "            proxy_next_upstream error timeout non_idempotent http_500 http_502 http_503 http_504;\n"
        f"            proxy_next_upstream_tries {tries};\n"
        "            error_page 507 = {retry};\n"
        "            error_page 502 = @busy_or_no_host;  # every task at its cap: 502 from nginx itself\n"
        "            error_page 503 504 = @no_host;"
    )
    return Upstream(blocks=blocks, hosts="$fizbuz_hosts", tries=tries, retry_policy=policy, first_try=first_try)


def upstream(settings, prefix):
    return dns_upstream(settings, prefix) if settings.dns_hosts else static_upstream(settings)


def metrics_access_log(settings, prefix):
    if not settings.metrics_log:
        return "    # (metrics log off)"
    return f"    access_log {prefix}/logs/{front_log.LOG_NAME} fizbuz_metrics buffer={settings.log_buffer} flush=1s;"


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
    lines = ["    map $connections_active $fizbuz_target_path {", f"        default {default};"]
    if settings.routing == "adaptive":
        lines += [f"        {count} {SINGLE_PREDICT_PATH};" for count in range(0, threshold + 1)]
    return "\n".join(lines + ["    }"])


def budget_on(settings):
    """The share budget runs on the fleet's door when its share is above 0."""
    return settings.retry_share > 0 and not settings.dns_hosts


def retry_budget_fields(settings):
    """The template's Lua fields: the modules, the shared dict and the code's
    folder (http), the deposit (server), the withdrawal (each retry location)."""
    if not budget_on(settings):
        off = "    # (the share retry budget is off: retry_share 0, or the container stack's door)"
        return {
            "LUA_MODULES": "# (no Lua module: the share retry budget is off)",
            "RETRY_BUDGET_HTTP": off,
            "RETRY_BUDGET_DEPOSIT": "        " + off.strip(),
            "RETRY_BUDGET_CHECK": "            # (no budget)",
        }
    share, floor, window = f"{settings.retry_share:g}", f"{settings.retry_floor:g}", RETRY_WINDOW
    http = (
        "    # The retry budget (issue 23, retry_budget.lua): counts shared by every nginx worker.\n"
        "    lua_shared_dict fizbuz_budget 1m;\n"
        f'    lua_package_path "{RETRY_BUDGET_LUA.parent}/?.lua;;";\n'
        "    # Loaded by the master (root) at start and reload: the unprivileged workers\n"
        "    # inherit it and need not read the checkout (a home folder may be closed to them).\n"
        "    init_by_lua_block { require('retry_budget') }\n"
        "    # Each worker's successes reach the shared counts at least once a second.\n"
        f"    init_worker_by_lua_block {{ require('retry_budget').flush_every({window}) }}\n"
        "    # The retry locations' withdrawal runs before their `if`s, which act on it.\n"
        "    rewrite_by_lua_no_postpone on;"
    )
    deposit = f"        log_by_lua_block {{ require('retry_budget').deposit({window}) }}"
    check = (
        f"            rewrite_by_lua_block {{ require('retry_budget').withdraw({share}, {floor}, {window}) }}\n"
        "            if ($fizbuz_retry = spent) {\n"
        '                return 503 \'{"error": "a host failed and the retry budget is spent (retries within '
        f'{share} of recent successes + {floor}/s): not retried; retry after {settings.retry_after} s", '
        '"code": 503}\\n\';\n'
        "            }"
    )
    return {
        "LUA_MODULES": "\n".join(f"load_module {module};" for module in LUA_MODULES),
        "RETRY_BUDGET_HTTP": http,
        "RETRY_BUDGET_DEPOSIT": deposit,
        "RETRY_BUDGET_CHECK": check,
    }


def render(settings, prefix, ready_cache=None):
    """The config; `ready_cache`: the folder of /ready's cache (nginx's workers
    write it), by default temp/ready under the prefix."""
    check_overload(settings)
    way = upstream(settings, prefix)
    values = {
        "PREFIX": str(prefix),
        "WORKERS": settings.workers,
        "LISTEN": settings.listen,
        "ERROR_LOG": settings.error_log or f"{prefix}/logs/error.log",
        "TOKENS_MAP": settings.tokens_map or f"{prefix}/tokens.map",
        "CERT": settings.certificate,
        "KEY": settings.key,
        "RATE": str(settings.rate),
        "BURST": str(settings.burst),
        "BODY_CAP": settings.body_cap,
        "READ_TIMEOUT": f"{settings.read_timeout:g}",
        "CONNECT_TIMEOUT": f"{settings.connect_timeout:g}",
        "UPSTREAMS": way.blocks,
        "HOSTS": way.hosts,
        "TRIES": str(way.tries),
        "RETRY_POLICY": way.retry_policy,
        "TARGET_MAP": target_map(settings),
        "FIRST_TRY": way.first_try.replace("{retry}", "@retry"),
        "FIRST_TRY_CALL": way.first_try.replace("{retry}", "@retry_call"),
        "RETRY_AFTER": str(int(settings.retry_after)),
        "LOG_BUFFER": settings.log_buffer,
        "PREDICT_PATH": PREDICT_PATH,
        "SMOKE_BODY": request_body(SMOKE_INPUT).decode(),
        "METRICS_LOG_FORMAT": front_log.nginx_log_format(),
        "NJS_MODULE": NJS_MODULE,
        "DOOR_JS": settings.door_js or str(DOOR_JS),
        "V2_BODY_CAP": V2_BODY_CAP,
        "V2_REPLY_CAP": V2_REPLY_CAP,
        "V2_MAX_NUMBERS": str(fizbuz_v2.MAX_NUMBERS),
        "CALL_HEADERS": "\n".join(f"            proxy_set_header {name} {value};" for name, value in CALL_HEADERS),
        "DEADLINE_HEADERS": "\n".join(f"        proxy_set_header {name} {value};" for name, value in DEADLINE_HEADERS),
        "NO_DEADLINE_HEADERS": "\n".join(f'            proxy_set_header {name} "";' for name, _ in DEADLINE_HEADERS),
        "METRICS_ACCESS_LOG": metrics_access_log(settings, prefix),
        "READY_CACHE": str(ready_cache or f"{prefix}/temp/ready"),
        "RLIMIT_NOFILE": str(RLIMIT_NOFILE),
        "WORKER_CONNECTIONS": str(WORKER_CONNECTIONS),
        "SSL_CIPHERS": SSL_CIPHERS,
        "ANON_CONNECTIONS": str(settings.anonymous_connections),
        "ANON_RATE": str(settings.anonymous_rate),
        "ANON_BURST": str(settings.anonymous_burst),
        "CLIENT_TIMEOUT": f"{settings.client_timeout:g}",
    }
    values.update(retry_budget_fields(settings))
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise ValueError(f"unfilled template fields: {leftover}")
    return text
