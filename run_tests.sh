#!/usr/bin/env bash
# Set up the test environment and run every test (unit + end to end).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

usage() {
  cat <<USAGE
Usage: ./run_tests.sh [pytest arguments]

Creates or refreshes .venv with the runtime and test packages (scripts/setup_env.sh --dev),
installs Chromium for the browser test when it is missing (scripts/setup_browser.sh, apt, root)
and Prometheus for the metrics test (serving/metrics/setup_prometheus.sh, apt, root),
then runs pytest on tests/: unit tests against the real built archive, and end-to-end
tests that start real servers on free ports in temporary folders and stop them again.
Extra arguments go to pytest, e.g. ./run_tests.sh tests/unit -x

Tiers: without arguments, everything (what CI runs): the default tier (about 10 minutes
  on 2 cores), then the container tier as a second stage (tests/containers, -m containers:
  docker.io and debootstrap installed with apt when missing, our own dockerd, a one-node
  Swarm; about 8 minutes). With arguments, only pytest with them, e.g.
  ./run_tests.sh -m containers tests/containers   the container tier alone
  ./run_tests.sh -m "not slow"   leaves out the C++ build, the browser, locust, Flask,
                                 the soak and fault runs (under 2 minutes)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac

ensure_venv --dev
"$ROOT/scripts/setup_browser.sh"
"$ROOT/serving/front/setup_nginx.sh"  # the front door's nginx (apt, root) for tests/front
"$ROOT/serving/metrics/setup_prometheus.sh"
"$ROOT/serving/redis/setup.sh"
cd "$ROOT"
if [ "$#" -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi
"$PY" -m pytest
# Second stage: the container tier (its own dockerd, a one-node Swarm, images built
# from a debootstrapped Debian base); progress lines as it goes.
say "second stage: the container tier (-m containers, about 8 minutes)"
"$ROOT/serving/containers/setup_docker.sh"
exec "$PY" -m pytest -m containers tests/containers -o log_cli=true --log-cli-level=INFO
