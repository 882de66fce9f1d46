#!/usr/bin/env bash
# Set up, build the model archive if needed, start MXNet Model Server and register FizBuzNet.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

usage() {
  cat <<USAGE
Usage: ./start_mms.sh [start] [OPTIONS]  set up, build the .mar if needed, start MMS, register, wait READY
                           (OPTIONS: fizbuz mms start -h, e.g. --workers 3)
       ./start_mms.sh stop        stop the server this project started (by its pid file)
       ./start_mms.sh status      print the model's settings and worker table
       ./start_mms.sh -h

Start creates the virtual environment on first use (scripts/setup_env.sh), installs
iptables when root lacks it (the management API's owner-only rule), runs
./build_mar.sh when model_store/fizbuz_package.mar is missing or older than its
sources, starts MMS with its own TMPDIR/TEMP and logs under \$FIZBUZ_RUN_DIR, registers
the model with batching through the management API, and returns once every worker is
READY and a real prediction has been answered. Re-running it while the server is up
only reports on it.

Environment (defaults in brackets):
  FIZBUZ_INFERENCE_PORT   [8080]  predictions API port
  FIZBUZ_INFERENCE_ADDRESS [127.0.0.1]  address the predictions API binds to (a host's own address to serve
                   other hosts; the management API always stays on 127.0.0.1)
  FIZBUZ_MANAGEMENT_PORT  [8081]  management API, on 127.0.0.1
  FIZBUZ_BATCH_SIZE       [16]    largest batch a worker gets
  FIZBUZ_MAX_BATCH_DELAY  [1]     ms a worker waits to fill a batch
  FIZBUZ_WORKERS          [2]     worker processes (one per core suits this model)
  FIZBUZ_SINGLE_WORKERS   [0]     also register the model as fizbuz_package_single (batch 1, no delay) with
                   this many workers: the fleet's front door sends lone requests there and bursts to
                   the batched fizbuz_package (serving/front/README.md, "Adaptive batching")
  FIZBUZ_ACCESS_LOG       [0]     1 writes the access log and per-request/per-batch log lines (costs throughput)
  FIZBUZ_METRICS_PORT     [8082]  Prometheus metrics at http://127.0.0.1:PORT/metrics, started and stopped with
                   the server (serving/metrics); 0 turns it off
  FIZBUZ_METRICS          [1]     0: no exporter and no Prometheus counters in the handler
  FIZBUZ_MODEL_METRICS_LOG [0 with metrics on, 1 off]  1: per-batch metric lines in logs/model_metrics.log:
                   MMS's own PredictionTime and the handler's four (Prometheus has them all)
  FIZBUZ_MMS_FAST_PROTOCOL [1]  0: MMS's workers exactly as MMS 1.0.8 ships them, without the worker
                   patch serving/mms/fast_worker.py (buffered frame decoder, no per-batch log lines)
  FIZBUZ_MMS_RUN_AS       []      started by root: run MMS (frontend, workers, exporter) as this unprivileged
                   user (a system user made when missing; the fleet's hosts use fizbuz-mms)
  FIZBUZ_TLS              [0]     1 serves predictions over HTTPS (management stays HTTP on loopback)
  FIZBUZ_TLS_CERT, FIZBUZ_TLS_KEY        PEM certificate and PKCS#8 key [a self-signed pair in the run folder]
  FIZBUZ_RUN_DIR   [$ROOT/run]  pid file, sockets, generated config, logs/
  FIZBUZ_MMS_TIMEOUT      [120]   seconds to wait for each start-up step
USAGE
}

command=${1:-start}
case "$command" in
  -h|--help) usage; exit 0 ;;
  start|stop|status) ;;
  *) echo "start_mms.sh: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac

if [ "$command" = start ]; then
  ensure_venv
  ensure_management_guard
  { read -r mar_name; read -r -a inputs; } < <("$PY" -m fizbuz.contract MAR_FILE_NAME ARCHIVE_INPUTS)
  mar=$("$PY" -m fizbuz.settings get model_store)/$mar_name
  stale=""
  if [ -f "$mar" ]; then
    stale=$(find "${inputs[@]}" -newer "$mar" | head -n 1)
  fi
  if [ ! -f "$mar" ] || [ -n "$stale" ]; then
    "$ROOT/build_mar.sh"
  fi
elif [ ! -x "$PY" ]; then
  die "no virtual environment at $VENV: nothing was started from this project"
fi
# Options after the command go to it (fizbuz mms start --workers 3 comes here).
exec "$PY" -m serving.mms.cli "$command" "${@:2}"
