#!/usr/bin/env bash
# FizBuzNet as container images on Docker Swarm: a thin entry to serving/containers/cli.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"

usage() {
  cat <<USAGE
Usage: serving/containers/containers.sh COMMAND [options]     (COMMAND -h for its options)

  start     install docker.io, debootstrap and docker-registry (pinned, apt) when missing,
            start our own dockerd when none runs, a one-node Swarm when the engine has none,
            build the images, deploy the stack (N MMS replicas behind the front door), wait
            for an answer
  start --nodes N [--managers M]   a multi-node Swarm on this machine instead: N engines,
            each in a network namespace of its own, joined over a bridge of ours, images
            through a registry on it; MMS on the model nodes, the front door on the edge node
  stop      remove the stack, the images it built, the Swarm and the dockerd(s) it started
            (with --nodes: every node's processes, namespaces, mounts, the bridge, registry)
  status    engine(s), nodes, services, tasks (per node), /ready
  env       export lines: eval "\$(serving/containers/containers.sh env)" (FIZBUZ_URL, _GRPC_URL, _TOKEN, _CACERT)
  update NEW.mar   roll a new archive out as a new MMS image tag (Swarm: start-first,
            health-gated, rolled back when the new tasks fail their health check)

Environment: FIZBUZ_CONTAINERS_DIR [run/containers], FIZBUZ_REPLICAS [2], FIZBUZ_STACK_WORKERS [1 per replica],
FIZBUZ_FRONT_PORT [8443], FIZBUZ_BASE [local: debootstrap; or e.g. debian:bookworm-slim], FIZBUZ_STACK [fizbuz],
FIZBUZ_MMS_CPUS [1], FIZBUZ_MMS_MEMORY [768M], FIZBUZ_NODES [1], FIZBUZ_MANAGERS [1],
FIZBUZ_SWARM_ADDRESS [127.0.0.1: where a one-node Swarm listens (2377) and advertises].
USAGE
}
case "${1:-}" in
  ""|-h|--help) usage; exit 0 ;;
esac
command=""
for argument in "$@"; do  # the command may follow --dir DIR
  case "$argument" in start|stop|status|env|update) command=$argument; break ;; esac
done
if [ "$command" = start ]; then
  "$ROOT/serving/containers/setup_docker.sh"
  ensure_venv
  [ -f "$ROOT/model_store/$("$PY" -m fizbuz.contract MAR_FILE_NAME)" ] || "$ROOT/build_mar.sh"
fi
[ -x "$PY" ] || die "no virtual environment: run scripts/setup_env.sh"
exec "$PY" -m serving.containers.cli "$@"
