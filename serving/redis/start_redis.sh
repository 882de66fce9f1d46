#!/usr/bin/env bash
# Start, stop or inspect a redis-server with the RedisAI-compatible module.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PORT=${FIZBUZ_REDIS_PORT:-6379}
BIND=${FIZBUZ_REDIS_BIND:-127.0.0.1}
RUN_DIR=${FIZBUZ_REDIS_RUN_DIR:-$ROOT/run/redis-$PORT}
THREADS=${FIZBUZ_REDIS_THREADS:-1}
APPENDONLY=${FIZBUZ_REDIS_APPENDONLY:-yes}
MODULE=${FIZBUZ_REDIS_MODULE:-$ROOT/build/redis/fizbuz_ai.so}
WAIT_SECONDS=${FIZBUZ_REDIS_WAIT:-30}
PIDFILE=$RUN_DIR/redis.pid

usage() {
  cat <<USAGE
Usage: serving/redis/start_redis.sh [start|stop|status|-h]

start   runs serving/redis/setup.sh (apt redis-server when missing, builds the
        module), then redis-server with the module, daemonized, RDB/AOF, log and
        pid in its own folder; waits until it answers PING
stop    SIGTERM to the pid in that folder (Redis saves and exits), waits for it
status  pid, PING, persistence and the module's models

Environment:
  FIZBUZ_REDIS_PORT        port (default: 6379)
  FIZBUZ_REDIS_BIND        address to listen on (default: 127.0.0.1)
  FIZBUZ_REDIS_RUN_DIR     RDB, AOF, redis.log, redis.pid (default: run/redis-\$PORT)
  FIZBUZ_REDIS_THREADS     the module's run threads (default: 1)
  FIZBUZ_REDIS_APPENDONLY  yes|no (default: yes)
  FIZBUZ_REDIS_MODULE      the module (default: build/redis/fizbuz_ai.so)
  FIZBUZ_REDIS_WAIT        seconds to wait for start or stop (default: 30)
Then: .venv/bin/python serving/redis/client.py --port \$FIZBUZ_REDIS_PORT --store 14
USAGE
}
die() { echo "start_redis.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }
cli() { redis-cli -h "$BIND" -p "$PORT" "$@"; }
our_pid() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"; }

# Poll a condition (a command) until it holds or WAIT_SECONDS pass.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "gave up after ${WAIT_SECONDS}s waiting for $what (log: $RUN_DIR/redis.log)"
    sleep 0.1
  done
}

start() {
  if pid=$(our_pid); then say "already running (pid $pid) on $BIND:$PORT"; return 0; fi
  [ "$(cli PING 2>/dev/null)" != PONG ] || die "something else already answers on $BIND:$PORT: choose FIZBUZ_REDIS_PORT"
  "$HERE/setup.sh"
  mkdir -p "$RUN_DIR"
  redis-server --port "$PORT" --bind "$BIND" --dir "$RUN_DIR" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$RUN_DIR/redis.log" \
    --appendonly "$APPENDONLY" --save "3600 1 300 100 60 10000" \
    --loadmodule "$MODULE" THREADS "$THREADS" || die "redis-server did not start (see $RUN_DIR/redis.log)"
  wait_for "PING on $BIND:$PORT" test "$(cli PING 2>/dev/null)" = PONG
  say "redis-server with the module on $BIND:$PORT (pid $(cat "$PIDFILE"), folder $RUN_DIR)"
}

stop() {
  local pid
  pid=$(our_pid) || { say "not running (no live pid in $PIDFILE)"; return 0; }
  kill -TERM "$pid"
  wait_for "pid $pid to exit" bash -c "! kill -0 $pid"
  say "stopped pid $pid"
}

status() {
  local pid
  pid=$(our_pid) || { echo "not running (folder $RUN_DIR)"; return 3; }
  echo "running: pid $pid on $BIND:$PORT, folder $RUN_DIR, PING: $(cli PING)"
  cli INFO persistence | grep -E '^(rdb_last_save_time|aof_enabled|aof_last_write_status):' || true
  cli MODULE LIST
  echo "keys: $(cli DBSIZE)"
}

case "${1:-start}" in
  -h|--help) usage ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "start_redis.sh: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
