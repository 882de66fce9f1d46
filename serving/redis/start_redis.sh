#!/usr/bin/env bash
# Start, stop or inspect a redis-server with the RedisAI-compatible module:
# a thin wrapper over serving/redis/cli.py (fizbuz.lifecycle does the work).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../scripts/common.sh"

usage() {
  cat <<USAGE
Usage: serving/redis/start_redis.sh [start|stop|status|-h]

start   runs serving/redis/setup.sh (apt redis-server when missing, builds the
        module), makes the users' passwords when missing (secrets/, files 0600)
        and the ACL file, then redis-server with the module in the background
        (its own session; as an unprivileged user when started by root), log and
        pid in its own folder, RDB/AOF/ACL in data/ there; waits until it answers
        PING and prints how to connect (no argument: start)
stop    SIGTERM to the pid in that folder (Redis saves and exits), waits for it
        (SIGKILL after FIZBUZ_REDIS_WAIT seconds)
status  pid, PING, persistence and the module's models

Environment:
  FIZBUZ_REDIS_PORT        port (default: 6379)
  FIZBUZ_REDIS_BIND        address to listen on (default: 127.0.0.1)
  FIZBUZ_REDIS_RUN_DIR     RDB, AOF, redis.log, redis.pid (default: run/redis-\$PORT)
  FIZBUZ_REDIS_THREADS     the module's run threads (default: 1)
  FIZBUZ_REDIS_APPENDONLY  yes|no (default: yes)
  FIZBUZ_REDIS_MODULE      the module (default: build/redis/fizbuz_ai.so)
  FIZBUZ_REDIS_WAIT        seconds to wait for start or stop (default: 30)
  FIZBUZ_REDIS_SECRETS     the users' password files (default: \$FIZBUZ_REDIS_RUN_DIR/secrets)
  FIZBUZ_REDIS_RUN_AS      the user redis-server runs as when started by root
                           (default: redis, else nobody; never root)
Users: admin (stores/deletes models, config), runner (tensors and runs only).
Then: .venv/bin/python serving/redis/client.py --port \$FIZBUZ_REDIS_PORT --store 14
USAGE
}
# No argument means start, as the README shows it.
command=${1:-start}
case "$command" in
  -h|--help) usage ;;
  start|stop|status)
    [ -x "$PY" ] || die "no virtual environment at $VENV: run scripts/setup_env.sh --dev"
    exec "$PY" -m serving.redis.cli "$command" ;;
  *) echo "start_redis.sh: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac
