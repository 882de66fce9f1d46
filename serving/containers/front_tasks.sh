#!/bin/bash
# The stack's front door (the front image's entry, under tini): nginx in the
# foreground, its upstream block kept equal to Swarm's healthy MMS tasks.
#
# Why: Swarm lists the healthy tasks under one DNS name (tasks.<stack>_mms).
# nginx 1.22 resolves a name either once at start (tasks come and go) or per
# request through a variable, and then holds no connection to a task: every
# request paid a TCP connect to MMS. So this loop asks the name every
# FIZBUZ_FRONT_TASKS_INTERVAL seconds and, when the answer changed, rewrites
# the upstream's server list (the file nginx.conf includes) and reloads nginx
# (SIGHUP: new workers, the old ones finish their requests). Between changes
# nginx keeps its connections to the tasks alive.
#
#   front_tasks.sh            run nginx and the loop (the image's entry)
#   front_tasks.sh --print    print the server lines for the name's answer now
#   front_tasks.sh -h         this help
set -euo pipefail

tasks=${FIZBUZ_FRONT_TASKS:-}                       # tasks.<stack>_mms:8080 (stack.yml)
conf=${FIZBUZ_FRONT_CONFIG:-/etc/fizbuz/nginx.conf}
file=${FIZBUZ_FRONT_TASKS_FILE:-/tmp/nginx/tasks.conf}  # the path nginx.conf includes
pid_file=${FIZBUZ_FRONT_PID_FILE:-/tmp/nginx/nginx.pid}
interval=${FIZBUZ_FRONT_TASKS_INTERVAL:-1}
admission=${FIZBUZ_ADMISSION:-64}                   # requests in flight per server line (0: no cap)

log() { printf '%s front_tasks: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

case "${1:-}" in
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --print|"") ;;
  *) die "unknown argument ${1} (-h for help)" ;;
esac
[[ $tasks =~ ^[A-Za-z0-9._-]+:[0-9]{1,5}$ ]] || die "FIZBUZ_FRONT_TASKS must be name:port, got '${tasks}'"
[[ $interval =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "FIZBUZ_FRONT_TASKS_INTERVAL must be seconds, got '${interval}'"
[[ $admission =~ ^[0-9]{1,6}$ ]] && [ "$admission" -le 100000 ] \
  || die "FIZBUZ_ADMISSION must be a whole number 0..100000, got '${admission}'"
cap=""
[ "$admission" -eq 0 ] || cap=" max_conns=${admission}"
name=${tasks%:*} port=${tasks##*:}

# The server lines for the addresses the name has now, sorted (a change is a
# text change). As the fleet's groups: each task a primary that 2 failures
# take out for 2 s, and a backup never marked failed (a burst of failures on
# every task must not leave "no live upstreams"). Each line holds at most
# FIZBUZ_ADMISSION requests in flight (issue 23's admission control: past the
# caps the door answers 503 + Retry-After at once). No task healthy yet: one
# server marked down, so nginx answers 503 (no host) instead of failing to start.
servers() {
  local addresses
  addresses=$(getent ahostsv4 "$name" | awk '$1 ~ /^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$/ {print $1}' | sort -u) || true
  if [ -z "$addresses" ]; then
    echo "server 127.0.0.1:1 down;  # no healthy task in DNS"
    return
  fi
  for address in $addresses; do echo "server ${address}:${port} max_fails=2 fail_timeout=2s${cap};"; done
  for address in $addresses; do echo "server ${address}:${port} backup max_fails=0${cap};"; done
}

if [ "${1:-}" = --print ]; then servers; exit 0; fi

write() { printf '%s\n' "$1" > "${file}.new" && mv -f "${file}.new" "$file"; }
summary() { grep -v backup <<< "$1" | awk '{print $2}' | paste -sd ' '; }

current=$(servers)
write "$current"
log "tasks of ${name}: $(summary "$current")"
nginx -e stderr -c "$conf" -g 'daemon off;' &
nginx_pid=$!
trap 'kill -TERM "$nginx_pid" 2>/dev/null || true' TERM INT
trap 'kill -QUIT "$nginx_pid" 2>/dev/null || true' QUIT

# nginx handles SIGHUP once it has written its pid file (its signal handlers
# are set before): until then a change waits for the next turn.
nginx_ready() { [ "$(cat "$pid_file" 2>/dev/null || true)" = "$nginx_pid" ]; }

# An empty answer is believed only after EMPTY_LOOKS looks in a row: a DNS
# hiccup (a timeout, a restarting engine) must not empty the upstream and turn
# every request away; the tasks that really left refuse connections and a try
# moves on (or the door answers 503) until then.
EMPTY_LOOKS=3
empty=0
while kill -0 "$nginx_pid" 2>/dev/null; do
  sleep "$interval" &
  wait $! || true  # a signal ends the wait early: the trap has run, the loop checks nginx
  next=$(servers)
  if [[ $next == *" down;"* ]]; then
    empty=$((empty + 1))
    if [ "$empty" -lt "$EMPTY_LOOKS" ]; then
      log "no task of ${name} in DNS (look ${empty} of ${EMPTY_LOOKS}): the upstream is kept"
      continue
    fi
  else
    empty=0
  fi
  if [ "$next" != "$current" ] && nginx_ready; then
    write "$next"
    kill -HUP "$nginx_pid" 2>/dev/null || true
    log "tasks of ${name} changed, nginx reloaded: $(summary "$next")"
    current=$next
  fi
done
status=0
wait "$nginx_pid" || status=$?
log "nginx exited (status ${status})"
exit "$status"
