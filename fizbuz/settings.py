"""Every setting of the project, in one table, read in one way.

Precedence, highest first:
  1. a command-line flag (`fizbuz mms start --workers 3`), where the part has one;
  2. the environment: FIZBUZ_<NAME> (FIZBUZ_WORKERS=3);
  3. the old, unprefixed name (WORKERS=3): still read, with one deprecation line;
  4. the default in this table.
Flags win because each part's parser takes its default from `value()`.

Ports and limits are defined here once; the rooms read them from here. Each
setting names the parts that read it. `fizbuz settings` prints the table with the
values in force here; `fizbuz settings --markdown` writes docs/settings.md (a
test keeps that file current). Shell scripts read the few settings they need
with `python -m fizbuz.settings get NAME` (scripts/common.sh), or, before a
venv exists, with the same FIZBUZ_ name and old name in plain shell.

Names outside the table that the project passes on but does not own (PATH,
JAVA_HOME, DOCKER_HOST, OMP_NUM_THREADS, MXNET_ENGINE_TYPE, CXX, PYTHON, CI,
HYPOTHESIS_PROFILE) keep their own names.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, PACKAGE_DIR, ROOT, RUN_DIR, WEIGHTS
from fizbuz.errors import SettingError

log = logging.getLogger(__name__)
PREFIX = "FIZBUZ_"
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Setting:
    key: str  # FIZBUZ_<KEY upper-cased> in the environment
    kind: type  # int, float, str, bool or Path
    default: object  # None: unset (the part decides, e.g. a self-signed certificate)
    parts: str  # which commands read it
    help: str
    old: tuple[str, ...] = ()  # names before the prefix, still read
    low: float | None = None
    high: float | None = None

    @property
    def env(self) -> str:
        return PREFIX + self.key.upper()


def _s(key, kind, default, parts, help, old=(), low=None, high=None) -> Setting:  # noqa: A002 (help as argparse)
    return Setting(key, kind, default, parts, help, tuple(old.split()) if isinstance(old, str) else old, low, high)


# MMS 1.0.8's frontend refuses ports from 32767 up.
MAX_MMS_PORT = 32766

SETTINGS: tuple[Setting, ...] = (
    # ---------------------------------------------------------------- one MMS (fizbuz mms, start_mms.sh)
    _s("run_dir", Path, RUN_DIR, "mms", "the server's run folder: pid file, sockets, config, logs/"),
    _s("mms_timeout", float, 120.0, "mms", "seconds to wait for each start-up step", "MMS_TIMEOUT", 1, 3600),
    _s(
        "mms_response_timeout",
        int,
        None,
        "mms, stack",
        "MMS's default_response_timeout in s (also bounds a worker's model load; default: config.properties' 30)",
        "MMS_RESPONSE_TIMEOUT",
        1,
        3600,
    ),
    _s(
        "mms_warmup",
        int,
        4,
        "mms",
        "passes over every input (0..1022), 16 at a time, each answer checked, before a server counts as ready: "
        "they warm the Java frontend's JIT (0: one smoke request only)",
        (),
        0,
        100,
    ),
    _s(
        "mms_netty_threads",
        int,
        None,
        "mms, stack",
        "Netty threads of MMS's frontend serving the APIs (number_of_netty_threads; 0: Netty's own, 2 x cores; "
        "default: config.properties' 1)",
        (),
        0,
        64,
    ),
    _s(
        "mms_netty_client_threads",
        int,
        None,
        "mms, stack",
        "Netty threads of MMS's frontend talking to its workers (netty_client_threads; 0: Netty's own; "
        "default: config.properties' 1)",
        (),
        0,
        64,
    ),
    _s(
        "mms_jvm_options",
        str,
        None,
        "mms, stack",
        "JVM options for MMS's Java frontend, space-separated, each starting with '-' (vmargs; default: "
        "config.properties' -XX:+UseSerialGC)",
    ),
    _s(
        "inference_address",
        str,
        "127.0.0.1",
        "mms",
        "address the predictions API binds to (management always stays on 127.0.0.1)",
        "INFERENCE_ADDRESS",
    ),
    _s("inference_port", int, 8080, "mms, stack", "MMS's predictions API port", "INFERENCE_PORT", 1, MAX_MMS_PORT),
    _s(
        "management_port", int, 8081, "mms", "MMS's management API port (127.0.0.1)", "MANAGEMENT_PORT", 1, MAX_MMS_PORT
    ),
    _s(
        "metrics_port",
        int,
        8082,
        "mms",
        "MMS's Prometheus exporter port; 0 turns the exporter off",
        "METRICS_PORT",
        0,
        65535,
    ),
    _s("model_store", Path, MODEL_STORE, "mms, build_mar.sh", "where the .mar is built and served from", "MODEL_STORE"),
    _s("batch_size", int, 16, "mms, fleet", "largest batch a worker gets", "BATCH_SIZE", 1, 1024),
    _s("max_batch_delay", int, 1, "mms", "ms a worker waits to fill a batch", "MAX_BATCH_DELAY", 0, 10000),
    _s(
        "workers",
        int,
        2,
        "mms, fleet",
        "MMS worker processes per host (one per core suits this model)",
        "WORKERS",
        1,
        16,
    ),
    _s(
        "single_workers",
        int,
        0,
        "mms",
        "also register fizbuz_package_single (batch 1, no delay) with this many workers",
        "SINGLE_WORKERS",
        0,
        16,
    ),
    _s("scale_single", bool, False, "scale_workers.sh", "scale fizbuz_package_single instead", "SCALE_SINGLE"),
    _s(
        "access_log",
        bool,
        False,
        "mms",
        "MMS's access log and per-request/per-batch lines (cost throughput)",
        "ACCESS_LOG",
    ),
    _s("metrics", bool, True, "mms", "the exporter and the handler's Prometheus counters", "METRICS"),
    _s(
        "model_metrics_log",
        int,
        None,
        "mms",
        "1: per-batch metric lines in model_metrics.log, MMS's PredictionTime and the handler's four "
        "(default 0 with metrics on, 1 off)",
        "MODEL_METRICS_LOG",
        0,
        1,
    ),
    _s(
        "mms_fast_protocol",
        bool,
        True,
        "mms",
        "the worker patch serving/mms/fast_worker.py (buffered frame decoder, no per-batch log lines); "
        "0: MMS's workers exactly as MMS 1.0.8 ships them",
    ),
    _s(
        "mms_run_as",
        str,
        None,
        "mms",
        "when root starts MMS: the unprivileged user its frontend, workers and exporter run as (made when "
        "missing); unset: they run as the caller",
    ),
    _s("tls", bool, False, "mms", "serve predictions over HTTPS", "TLS"),
    _s("tls_cert", Path, None, "mms, fleet", "PEM certificate (default: a self-signed one)", "TLS_CERT"),
    _s("tls_key", Path, None, "mms, fleet", "PEM private key, PKCS#8", "TLS_KEY"),
    # ---------------------------------------------------------------- the model's files
    _s("weights", Path, WEIGHTS, "build_mar.sh, flask", "the trained weights"),
    _s("staging_dir", Path, PACKAGE_DIR, "build_mar.sh", "where the archive's folder is staged", "STAGING_DIR"),
    _s("venv", Path, ROOT / ".venv", "every script", "the project's virtual environment"),
    # ---------------------------------------------------------------- the front door (fizbuz fleet, fleet.sh)
    _s("fleet_dir", Path, RUN_DIR / "fleet", "fleet", "the fleet's folder: state, tokens, nginx, hosts", "FLEET_DIR"),
    _s("hosts", int, 2, "fleet", "model hosts behind the front door", "HOSTS", 1, 16),
    _s("front_port", int, 8443, "fleet, stack", "the front door's HTTPS port", "FRONT_PORT", 1, 65535),
    _s("front_address", str, "127.0.0.1", "fleet", "address the front door listens on", "FRONT_ADDRESS"),
    _s("mar", Path, MODEL_STORE / MAR_FILE_NAME, "fleet", "the archive the hosts serve", "MAR"),
    _s("rate", int, 50000, "fleet", "requests/s per token (nginx limit_req)", "RATE", 1, 1_000_000),
    _s("burst", int, 10000, "fleet", "requests per token allowed over the rate at once", "BURST", 0, 1_000_000),
    _s("body_cap", str, "4k", "fleet", "largest card-path request body (nginx size)", "BODY_CAP"),
    _s(
        "nginx_workers",
        str,
        "1",
        "fleet",
        "nginx worker processes (1: cheapest beside MMS on a small box; "
        "auto: one per core, for a front door on a machine of its own)",
        "NGINX_WORKERS",
    ),
    _s(
        "front_metrics_port",
        int,
        9113,
        "fleet",
        "the front door's exporter port; 0: no metrics",
        "FRONT_METRICS_PORT",
        0,
        65535,
    ),
    _s("read_timeout", float, 3.0, "fleet", "seconds nginx waits for a host's answer", "READ_TIMEOUT", 0.1, 600),
    _s(
        "fleet_mms_user",
        str,
        "fizbuz-mms",
        "fleet",
        "the unprivileged system user each local host's MMS runs as when root starts the fleet (made when missing)",
    ),
    _s(
        "fleet_single_workers",
        int,
        1,
        "fleet",
        "batch-1 workers per host for adaptive batching (0 with --batched-only)",
        "SINGLE_WORKERS",
        0,
        16,
    ),
    _s(
        "adaptive_threshold",
        int,
        8,
        "fleet",
        "at most this many open client connections: a request goes to batch 1",
        "ADAPTIVE_THRESHOLD",
        0,
        100000,
    ),
    _s("adaptive", bool, True, "fleet", "adaptive batching (0: every request batched)", "ADAPTIVE"),
    _s(
        "admission",
        int,
        64,
        "fleet, stack",
        "requests in flight per host entry before the front door answers 503 + Retry-After "
        "(0: no admission control; docs/overload.md); the stack's door reads it in front_tasks.sh",
        "ADMISSION",
        0,
        100000,
    ),
    _s("retry_budget", int, 32, "fleet", "retries in flight per host entry (0: unbounded)", "RETRY_BUDGET", 0, 100000),
    _s(
        "retry_share",
        float,
        0.1,
        "fleet",
        "retries on another host per recent (10 s) successful request (0: no share budget; docs/overload.md)",
        "RETRY_SHARE",
        0,
        1,
    ),
    _s(
        "retry_floor",
        float,
        3.0,
        "fleet",
        "retries/s allowed whatever the successes (a quiet door still retries a worker's death)",
        "RETRY_FLOOR",
        0,
        1000,
    ),
    # ---------------------------------------------------------------- the Swarm stack (fizbuz stack, containers.sh)
    _s(
        "containers_dir",
        Path,
        RUN_DIR / "containers",
        "stack",
        "the stack's folder: dockerd, state, tokens",
        "CONTAINERS_DIR",
    ),
    _s("stack", str, "fizbuz", "stack", "the stack's name", "STACK"),
    _s("replicas", int, 2, "stack", "MMS tasks", "REPLICAS", 1, 32),
    _s("stack_workers", int, 1, "stack", "MMS workers per task", "WORKERS", 1, 16),
    _s("base", str, "local", "stack", "base image: local (debootstrap) or an image name", "BASE"),
    _s("mms_cpus", str, "1", "stack", "CPU limit per MMS task", "MMS_CPUS"),
    _s("mms_memory", str, "768M", "stack", "memory limit per MMS task", "MMS_MEMORY"),
    _s(
        "swarm_address",
        str,
        "127.0.0.1",
        "stack",
        "the address a one-node Swarm listens (2377) and advertises on (docker swarm init)",
    ),
    _s(
        "nodes",
        int,
        1,
        "stack",
        "Swarm nodes (1: this machine's engine; 2..9: one engine per network namespace)",
        "NODES",
        1,
        9,
    ),
    _s("managers", int, 1, "stack", "of the nodes, how many are managers (3 for a quorum)", "MANAGERS", 1, 9),
    _s(
        "front_tasks",
        str,
        "",
        "stack (in the front image)",
        "name:port of the MMS tasks in Swarm's DNS, kept as nginx's upstream (stack.yml sets it)",
    ),
    _s(
        "front_tasks_interval",
        float,
        1.0,
        "stack (in the front image)",
        "seconds between two looks at the tasks' DNS name",
    ),
    _s("front_config", str, "/etc/fizbuz/nginx.conf", "stack (in the front image)", "nginx's config"),
    _s(
        "front_tasks_file",
        str,
        "/tmp/nginx/tasks.conf",
        "stack (in the front image)",
        "the upstream's server lines, included by the config",
    ),
    _s("front_pid_file", str, "/tmp/nginx/nginx.pid", "stack (in the front image)", "nginx's pid file"),
    _s(
        "drain_seconds",
        float,
        3.0,
        "stack (in the MMS image)",
        "seconds a stopping task keeps answering",
        "DRAIN_SECONDS",
        0,
        600,
    ),
    _s(
        "health_timeout",
        float,
        4.0,
        "stack (in the MMS image)",
        "the health check's timeout",
        "HEALTH_TIMEOUT",
        0.1,
        600,
    ),
    _s("image_version", str, "dev", "stack (in the images)", "the images' version label"),
    # ---------------------------------------------------------------- Flask + gunicorn (fizbuz flask, serve.sh)
    _s("flask_port", int, 8000, "flask", "gunicorn's port on 127.0.0.1", "PORT", 1, 65535),
    _s("flask_workers", int, 2, "flask", "gunicorn worker processes", "WORKERS", 1, 64),
    _s("flask_worker_class", str, "sync", "flask", "gunicorn worker class: sync or gthread", "WORKER_CLASS"),
    _s("flask_threads", int, 4, "flask", "threads per gthread worker", "THREADS", 1, 256),
    _s("flask_keep_alive", int, 75, "flask", "gthread keep-alive seconds", "KEEP_ALIVE", 0, 3600),
    _s("flask_access_log", bool, False, "flask", "gunicorn's access log", "ACCESS_LOG"),
    _s("flask_run_dir", Path, RUN_DIR / "flask", "flask", "pid file and logs", "FLASK_RUN_DIR"),
    _s("flask_start_timeout", float, 120.0, "flask", "seconds to wait for gunicorn", "START_TIMEOUT", 1, 3600),
    # ---------------------------------------------------------------- the netron view (fizbuz netron)
    _s("netron_host", str, "127.0.0.1", "netron", "address netron listens on", "NETRON_HOST"),
    _s("netron_port", str, "8090", "netron", "netron's port (never MMS's)", "NETRON_PORT"),
    _s("netron_timeout", float, 30.0, "netron", "seconds to wait for netron", "NETRON_TIMEOUT", 1, 3600),
    _s("netron_browse", bool, False, "netron", "open a browser when a display is there", "NETRON_BROWSE"),
    # ---------------------------------------------------------------- Redis (fizbuz redis, start_redis.sh)
    _s("redis_port", int, 6379, "redis", "redis-server's port", (), 1, 65535),
    _s("redis_bind", str, "127.0.0.1", "redis", "address redis-server binds to"),
    _s("redis_run_dir", Path, None, "redis", "the server's folder (default ./run/redis-PORT)"),
    _s("redis_threads", int, 1, "redis", "the module's run threads", (), 1, 64),
    _s("redis_appendonly", str, "yes", "redis", "AOF persistence: yes or no"),
    _s("redis_module", Path, None, "redis", "the module's .so (default: the built one)"),
    _s("redis_wait", float, 30.0, "redis", "seconds to wait for redis-server", (), 1, 3600),
    _s("redis_secrets", Path, None, "redis", "the folder of the users' passwords (default RUN_DIR/secrets)"),
    # ---------------------------------------------------------------- clients, tools, builds
    _s("url", str, None, "clients", "the front door's URL (printed by `fizbuz fleet env`)"),
    _s("grpc_url", str, None, "clients", "the front door's gRPC address (host:port)"),
    _s("cacert", Path, None, "clients", "the CA certificate that signed the front door's"),
    _s("token", str, None, "clients", "a bearer token for the front door (never put it on a command line)"),
    _s("clients_venv", Path, ROOT / ".venv-clients", "clients, bench v2", "tritonclient's own venv"),
    _s(
        "torchserve_venv",
        Path,
        ROOT / ".venv-torchserve",
        "bench torchserve",
        "TorchServe's own venv (bench/torchserve/setup.sh)",
    ),
    _s("chromium", Path, Path("/usr/bin/chromium"), "render, tests", "the Chromium binary", "CHROMIUM"),
    _s("prometheus", Path, Path("/usr/bin/prometheus"), "tests, bench", "the Prometheus binary", "PROMETHEUS"),
    _s("test_multinode", bool, True, "run_tests.sh", "run the multi-node tier (tests/multinode) as the third stage"),
    _s("apt_lock_timeout", int, 300, "provisioning", "seconds apt waits for its lock", "APT_LOCK_TIMEOUT", 0, 3600),
    _s("cpp_build_dir", Path, ROOT / "build/cpp", "cpp/build.sh", "the C++ runner's build folder"),
    _s("cpp_jobs", int, 2, "cpp/build.sh", "parallel compile jobs", (), 1, 64),
    _s("cpp_build_timeout", int, 900, "cpp/build.sh", "seconds the C++ build may take", (), 1, 86400),
    _s("redis_build_dir", Path, ROOT / "build/redis", "redis", "the Redis module's build folder"),
    _s("redis_jobs", int, 2, "redis", "parallel compile jobs", (), 1, 64),
    _s("redis_sanitize", str, "OFF", "redis", "ON builds the module with ASan/UBSan"),
    _s("redisai_venv", Path, ROOT / ".venv-redisai", "redis tests", "the redisai client's own venv"),
    _s("redis_run_as", str, None, "redis", "the unprivileged user redis-server runs as (root starts it)"),
)

BY_KEY = {setting.key: setting for setting in SETTINGS}
_warned: set[str] = set()


def _parse(setting: Setting, name: str, text: str):
    try:
        if setting.kind is bool:
            return BOOL_WORDS[text.strip().lower()]
        value = setting.kind(text.strip()) if setting.kind is not Path else Path(text)
    except (KeyError, ValueError):
        kind = {bool: "0 or 1", int: "a whole number", float: "a number"}.get(setting.kind, "a value")
        raise SettingError(f"{name}={text!r} is not {kind} ({setting.help})") from None
    if setting.kind in (int, float) and (
        (setting.low is not None and value < setting.low) or (setting.high is not None and value > setting.high)
    ):
        raise SettingError(f"{name}={text!r} is outside {setting.low:g}..{setting.high:g} ({setting.help})")
    return value


def source(key: str, environ=None) -> tuple[str, str] | None:
    """(name, text) of where the environment sets `key`, or None: the FIZBUZ_ name first, then an old name."""
    environ = os.environ if environ is None else environ
    setting = BY_KEY[key]
    for name in (setting.env, *setting.old):
        text = environ.get(name, "")
        if text.strip():
            return name, text
    return None


def default(key: str):
    """The table's default for `key` (for constants the rooms define from it)."""
    return BY_KEY[key].default


def value(key: str, environ=None):
    """The setting's value from the environment (FIZBUZ_ name, then old name), else its default."""
    setting = BY_KEY[key]
    found = source(key, environ)
    if found is None:
        return setting.default
    name, text = found
    if name != setting.env and name not in _warned:
        _warned.add(name)
        log.warning("%s is deprecated: set %s instead (same value)", name, setting.env)
    return _parse(setting, name, text)


def helptext(key: str, what: str = "") -> str:
    """`what` plus "(env FIZBUZ_<NAME>, default D)" for a flag's help."""
    setting = BY_KEY[key]
    default = "unset" if setting.default is None else _shown(setting.default)
    return f"{what or setting.help} (env {setting.env}, default {default})"


def add_flag(parser, key: str, *flags: str, what: str = "", **options):
    """`parser.add_argument(flag)` whose default is the setting's value (so a flag
    wins over the environment) and whose help names its FIZBUZ_ variable; the
    type comes from the table unless given."""
    kind = BY_KEY[key].kind
    if kind in (int, float) and "action" not in options:
        options.setdefault("type", kind)
    current = value(key)
    if isinstance(current, Path):
        current = str(current)
    return parser.add_argument(*flags, default=current, help=helptext(key, what), **options)


def _shown(default) -> str:
    if isinstance(default, Path):
        try:
            return "./" + str(default.relative_to(ROOT))
        except ValueError:
            return str(default)
    if isinstance(default, bool):
        return "1" if default else "0"
    return str(default)


def markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Every setting, generated from `fizbuz/settings.py` by `fizbuz settings --markdown` "
        "(a test keeps this page current).",
        "",
        "Precedence, highest first: a command-line flag, `FIZBUZ_<NAME>` in the environment, the old "
        "unprefixed name (still read, with a deprecation line), the default below.",
        "",
        "| setting | old name | default | read by | what |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "unset" if s.default is None else f"`{_shown(s.default)}`"
        old = ", ".join(f"`{name}`" for name in s.old) or "-"
        lines.append(f"| `{s.env}` | {old} | {default} | {s.parts} | {s.help} |")
    return "\n".join(lines) + "\n"


def table(environ=None) -> str:
    rows = [("setting", "value here", "from")]
    for s in SETTINGS:
        found = source(s.key, environ)
        shown = "unset" if s.default is None else _shown(s.default)
        if found:
            name, text = found
            shown = "(hidden)" if s.key == "token" else text
        rows.append((s.env, shown, found[0] if found else "default"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fizbuz settings",
        description=__doc__.split("\n\n")[0],
        epilog="Precedence: flag > FIZBUZ_<NAME> > old name > default.",
    )
    parser.add_argument("--markdown", action="store_true", help="print the docs page (docs/settings.md)")
    sub = parser.add_subparsers(dest="command")
    get = sub.add_parser("get", help="print settings' values, one per line (for shell scripts: one start-up)")
    get.add_argument("keys", nargs="+", choices=sorted(BY_KEY), metavar="KEY")
    args = parser.parse_args(argv)
    try:
        if args.command == "get":
            for key in args.keys:
                shown = value(key)
                print("" if shown is None else _shown(shown) if isinstance(shown, bool) else shown)
        else:
            print(markdown() if args.markdown else table(), end="\n" if not args.markdown else "")
    except SettingError as error:
        print(f"fizbuz settings: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
