#!/usr/bin/env bash
# The local fleet and its front door: a thin entry to serving/front/cli.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"

usage() {
  cat <<USAGE
Usage: serving/front/fleet.sh COMMAND [options]     (COMMAND -h for its options)

  start [-n HOSTS] [--workers W] [--port P]   N model hosts (default 2), each a network namespace
          on a bridge with its own MMS, and the nginx front door (HTTPS, tokens) in the root
          namespace; without root: loopback addresses 127.77.x.y. Re-running restarts what died.
  start --external-hosts A:P,B:P   only the front door, over real hosts running start_mms.sh
  stop                  stop and remove all of it (processes, namespaces, veths, bridge), also after kill -9
  status                hosts, workers, front door, its metrics URL
  env                   export lines: eval "\$(serving/front/fleet.sh env)" (FIZBUZ_URL, _GRPC_URL, _TOKEN, _CACERT, _METRICS_URL)
  token add|revoke|list NAME [--token-file F|-]   edit the tokens file and reload (no request dropped)
  reload                re-read the tokens file
  limits [--rate R] [--burst B] [--body-cap SIZE] [--routing adaptive|batched|single] [--adaptive-threshold N]
  drain|undrain HOST    take a host out of / back into the front door's rotation
  rollout NEW.mar       update the hosts one at a time (drain, re-register, check, put back)
  rollback              back to each host's previous .mar

Environment: FIZBUZ_FLEET_DIR [run/fleet], FIZBUZ_HOSTS [2], FIZBUZ_WORKERS [2], FIZBUZ_FRONT_PORT [8443], FIZBUZ_RATE [50000 req/s
per token], FIZBUZ_BURST [10000], FIZBUZ_BODY_CAP [4k], FIZBUZ_READ_TIMEOUT [3 s], FIZBUZ_MAR [model_store/fizbuz_package.mar],
FIZBUZ_TLS_CERT/FIZBUZ_TLS_KEY [a self-signed pair made once], FIZBUZ_NGINX_WORKERS [1], FIZBUZ_FRONT_METRICS_PORT [9113: the
front door's Prometheus metrics on http://127.0.0.1:PORT/metrics, started and stopped with it; 0: none].
Adaptive batching (on by default): FIZBUZ_FLEET_SINGLE_WORKERS [1 batch-1 worker per host beside the FIZBUZ_WORKERS
batched ones], FIZBUZ_ADAPTIVE_THRESHOLD [8: at most this many open client connections -> batch 1],
FIZBUZ_ADAPTIVE=0 (or start --batched-only) turns it off; limits --routing/--adaptive-threshold change it live.
Overload (docs/overload.md): FIZBUZ_ADMISSION [64 requests in flight per host entry, then 503 + Retry-After;
0: off], FIZBUZ_RETRY_BUDGET [32 retries in flight per host entry], FIZBUZ_RETRY_SHARE [0.1 retries per
recent success; 0: off], FIZBUZ_RETRY_FLOOR [3 retries/s whatever the successes]; limits --admission/--retry-budget/
--retry-share/--retry-floor live.
Started by root, each host's MMS (frontend, workers, exporter) runs as FIZBUZ_FLEET_MMS_USER [fizbuz-mms, a system
user made when missing] (start --mms-user NAME).
USAGE
}
case "${1:-}" in
  ""|-h|--help) usage; exit 0 ;;
esac
[ -x "$PY" ] || die "no virtual environment: run scripts/setup_env.sh"
if [ "$1" = start ]; then
  "$ROOT/serving/front/setup_nginx.sh"
  ensure_management_guard
  [ -f "$("$PY" -m fizbuz.settings get mar)" ] || "$ROOT/build_mar.sh"
fi
exec "$PY" -m serving.front.cli "$@"
