#!/usr/bin/env bash
# Start, stop or inspect the Flask + gunicorn baseline (flask_app/app.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

PORT=${PORT:-8000}
WORKERS=${WORKERS:-2}
WORKER_CLASS=${WORKER_CLASS:-sync}
THREADS=${THREADS:-4}
ACCESS_LOG=${ACCESS_LOG:-0}
RUN_DIR=${FLASK_RUN_DIR:-$ROOT/run/flask}
START_TIMEOUT=${START_TIMEOUT:-120}
PID_FILE=$RUN_DIR/gunicorn.pid
LOG_FILE=$RUN_DIR/gunicorn.log
APP='flask_app.app:create_app()'

usage() {
  cat <<USAGE
Usage: flask_app/serve.sh [start]   start gunicorn on 127.0.0.1:\$PORT, wait until it answers
       flask_app/serve.sh stop      stop the gunicorn started from \$FLASK_RUN_DIR (by its pid file)
       flask_app/serve.sh status    print its pid and worker processes
       flask_app/serve.sh -h

Serves FizBuzNet from assets/fizbuz_model.pth with MMS's contract:
  curl -X POST http://127.0.0.1:\$PORT/predictions/fizbuz_package \\
       -H 'Content-Type: application/json' -d '{"input.1": 14}'
Start returns once a real prediction is answered; re-running it while up only reports.

Environment (defaults in brackets):
  PORT           [8000]   port on 127.0.0.1
  WORKERS        [2]      gunicorn worker processes
  WORKER_CLASS   [sync]   sync, or gthread (threads in each worker)
  THREADS        [4]      threads per worker for gthread
  ACCESS_LOG     [0]      1 writes \$FLASK_RUN_DIR/access.log (costs throughput)
  FLASK_RUN_DIR  [$ROOT/run/flask]  pid file and gunicorn.log
  START_TIMEOUT  [120]    seconds to wait for the first answer
  FIZBUZ_WEIGHTS [assets/fizbuz_model.pth]  the PyTorch weights to serve
USAGE
}

command=${1:-start}
case "$command" in
  -h|--help) usage; exit 0 ;;
  start|stop|status) ;;
  *) echo "serve.sh: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac

# The pid in the pid file, if that process is a live gunicorn.
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(tr -dc '0-9' < "$PID_FILE")
  [ -n "$pid" ] && ps -o args= -p "$pid" 2>/dev/null | grep -q gunicorn || return 1
  echo "$pid"
}

answer() {
  curl -sS --max-time 2 -X POST "http://127.0.0.1:$PORT/predictions/fizbuz_package" \
    -H 'Content-Type: application/json' -d '{"input.1": 14}' 2>/dev/null || true
}

stop() {
  local pid deadline
  if ! pid=$(running_pid); then
    say "no gunicorn is running from $RUN_DIR"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid"
  deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    pkill -KILL -P "$pid" || true
    kill -KILL "$pid" || true
  fi
  rm -f "$PID_FILE"
  say "stopped gunicorn (pid $pid)"
}

case "$command" in
  stop) stop; exit 0 ;;
  status)
    pid=$(running_pid) || die "no gunicorn is running from $RUN_DIR"
    echo "gunicorn master $pid; workers:"
    ps -o pid=,rss=,args= --ppid "$pid"
    exit 0 ;;
esac

if pid=$(running_pid); then
  say "gunicorn is already running from $RUN_DIR (pid $pid); 'flask_app/serve.sh stop' first to restart it"
  exit 0
fi
case "$WORKER_CLASS" in sync|gthread) ;; *) die "WORKER_CLASS must be sync or gthread, got '$WORKER_CLASS'" ;; esac
[ -x "$VENV/bin/gunicorn" ] || die "gunicorn is not installed in $VENV: run scripts/setup_env.sh --dev"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  die "port $PORT is already in use on 127.0.0.1: choose another with PORT="
fi
mkdir -p "$RUN_DIR"
options=()
[ "$ACCESS_LOG" = 1 ] && options+=(--access-logfile "$RUN_DIR/access.log")
# gunicorn turns sync into gthread when given --threads > 1.
[ "$WORKER_CLASS" = gthread ] && options+=(--threads "$THREADS")

say "starting gunicorn ($WORKERS $WORKER_CLASS workers) on 127.0.0.1:$PORT, log $LOG_FILE"
"$VENV/bin/gunicorn" --chdir "$ROOT" --bind "127.0.0.1:$PORT" --workers "$WORKERS" \
  --worker-class "$WORKER_CLASS" --pid "$PID_FILE" --error-logfile "$LOG_FILE" \
  --no-control-socket "${options[@]}" --daemon "$APP"

# Ready = a real prediction is answered. The pid file appears within moments
# of the master starting and goes when it exits (e.g. a worker failed to boot).
grace=$((SECONDS + 10))
deadline=$((SECONDS + START_TIMEOUT))
until answer | grep -q '"FizzBuzz"'; do
  if ! running_pid >/dev/null && { [ -f "$PID_FILE" ] || [ $SECONDS -ge $grace ]; }; then
    die "gunicorn is not running; last lines of $LOG_FILE:
$(tail -n 20 "$LOG_FILE" 2>/dev/null)"
  fi
  if [ $SECONDS -ge $deadline ]; then
    stop >&2
    die "no answer on port $PORT after ${START_TIMEOUT} s; see $LOG_FILE"
  fi
  sleep 0.1  # a poll interval, not a readiness guess
done
say "serving on http://127.0.0.1:$PORT/predictions/fizbuz_package (pid $(running_pid))"
