#!/usr/bin/env bash
# Serve the ONNX graph in netron on loopback, on a port that cannot collide with MMS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

NETRON_HOST=${NETRON_HOST:-127.0.0.1}
NETRON_PORT=${NETRON_PORT:-8090}
NETRON_TIMEOUT=${NETRON_TIMEOUT:-30}
NETRON_BROWSE=${NETRON_BROWSE:-0}
RUN_DIR=${FIZBUZ_RUN_DIR:-$ROOT/run}
PID_FILE=$RUN_DIR/netron.pid
LOG_FILE=$RUN_DIR/netron.log
URL="http://$NETRON_HOST:$NETRON_PORT/"
NETRON_PID=""

usage() {
  cat <<USAGE
Usage: ./inspect_model.sh [serve] [MODEL]  serve MODEL in the foreground; Ctrl-C stops it
       ./inspect_model.sh start [MODEL]    serve in the background; prints the URL and PID
       ./inspect_model.sh stop             stop the background server (by its PID file)
       ./inspect_model.sh status           say whether it runs, and where
       ./inspect_model.sh -h

Runs netron (pinned in requirements-dev.txt) on MODEL (default: fizbuz_package/fizbuz.onnx),
waits until its page and the model answer over HTTP, and prints the URL to open. netron's
own default port is 8080, MMS's inference port, so this never uses it. No browser is
needed: open the URL from anywhere that reaches it (e.g. ssh -L $NETRON_PORT:127.0.0.1:$NETRON_PORT).

Environment (defaults in brackets):
  NETRON_HOST      [127.0.0.1]  address to listen on
  NETRON_PORT      [8090]       port; must be free and not INFERENCE_PORT/MANAGEMENT_PORT
  NETRON_TIMEOUT   [30]         seconds to wait for netron to answer
  NETRON_BROWSE    [0]          1 also opens a browser, when a display (DISPLAY/WAYLAND_DISPLAY) exists
  FIZBUZ_RUN_DIR   [$ROOT/run]  where netron.pid and netron.log go
  INFERENCE_PORT   [8080], MANAGEMENT_PORT [8081]  MMS's ports, refused as NETRON_PORT
USAGE
}

command=serve
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  serve|start|stop|status) command=$1; shift ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }
MODEL=${1:-$ROOT/fizbuz_package/fizbuz.onnx}

# The PID in the pid file, if that process is alive and is netron (not a reused PID).
running_pid() {
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q netron || return 1
  echo "$pid"
}

stop_pid() {
  local pid=$1 waited=0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
    sleep 0.1; waited=$((waited + 1))  # bounded: 10 s, then SIGKILL
  done
  kill -KILL "$pid" 2>/dev/null || true
}

check_port() {
  [[ $NETRON_PORT =~ ^[0-9]+$ ]] && [ "$NETRON_PORT" -ge 1 ] && [ "$NETRON_PORT" -le 65535 ] \
    || die "NETRON_PORT must be a port number, got '$NETRON_PORT'"
  local mms_port
  for mms_port in "${INFERENCE_PORT:-8080}" "${MANAGEMENT_PORT:-8081}"; do
    [ "$NETRON_PORT" != "$mms_port" ] \
      || die "NETRON_PORT=$NETRON_PORT is an MMS port (8080 inference, 8081 management); pick another"
  done
  # A connection that succeeds means someone already listens there.
  if (exec 3<>"/dev/tcp/$NETRON_HOST/$NETRON_PORT") 2>/dev/null; then
    die "port $NETRON_PORT on $NETRON_HOST is already in use; set NETRON_PORT to a free one"
  fi
}

# Poll the real endpoints (page and model bytes) until they answer, the process dies, or time runs out.
wait_ready() {
  local pid=$1 deadline=$((SECONDS + NETRON_TIMEOUT))
  local model_url="${URL}data/$(basename "$MODEL")"
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      die "netron exited during start-up (log: $LOG_FILE)"
    fi
    if curl -sf --max-time 2 -o /dev/null "$URL" && curl -sf --max-time 2 -o /dev/null "$model_url"; then
      return 0
    fi
    sleep 0.2
  done
  stop_pid "$pid"
  rm -f "$PID_FILE"
  die "netron did not answer at $URL within ${NETRON_TIMEOUT}s (log: $LOG_FILE)"
}

launch() {
  [ -f "$MODEL" ] || die "no model at $MODEL: run '$PY export_onnx.py' first"
  MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
  check_port
  ensure_venv --dev
  mkdir -p "$RUN_DIR"
  say "serving $MODEL with netron $("$VENV/bin/netron" --version 2>&1)"
  # Its own session: in start mode it outlives the terminal; in serve mode the
  # trap below stops it by PID, whatever signal reached this script.
  setsid "$VENV/bin/netron" --host "$NETRON_HOST" --port "$NETRON_PORT" "$MODEL" \
    </dev/null >"$LOG_FILE" 2>&1 &
  NETRON_PID=$!
  echo "$NETRON_PID" >"$PID_FILE"
  wait_ready "$NETRON_PID"
  echo "netron is ready: $URL  (pid $NETRON_PID)"
  if [ "$NETRON_BROWSE" = 1 ]; then
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      "$PY" -m webbrowser -t "$URL" >/dev/null 2>&1 || echo "could not open a browser; open $URL yourself"
    else
      echo "no display here: open $URL in a browser that can reach this machine"
    fi
  fi
}

case "$command" in
  serve)
    if pid=$(running_pid); then die "netron already runs in the background (pid $pid); './inspect_model.sh stop' first"; fi
    trap '[ -z "$NETRON_PID" ] || { stop_pid "$NETRON_PID"; rm -f "$PID_FILE"; say "netron stopped"; }' EXIT
    trap 'exit 0' INT TERM
    launch
    echo "Ctrl-C stops it."
    status=0
    wait "$NETRON_PID" || status=$?
    # Only reached when netron ended by itself or by 'stop' from elsewhere.
    [ "$status" = 0 ] || { echo "netron exited with status $status (log: $LOG_FILE)" >&2; exit "$status"; }
    ;;
  start)
    if pid=$(running_pid); then
      echo "netron already runs: pid $pid; $(grep -o 'Serving.*' "$LOG_FILE" 2>/dev/null || true)"
      exit 0
    fi
    launch
    echo "stop it with: ./inspect_model.sh stop   (or: kill $NETRON_PID)"
    ;;
  stop)
    if pid=$(running_pid); then
      stop_pid "$pid"
      say "stopped netron (pid $pid)"
    else
      echo "netron is not running"
    fi
    rm -f "$PID_FILE"
    ;;
  status)
    if pid=$(running_pid); then
      echo "netron runs: pid $pid; $(grep -o 'Serving.*' "$LOG_FILE" 2>/dev/null || true)"
    else
      echo "netron is not running"; exit 1
    fi
    ;;
esac
