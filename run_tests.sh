#!/usr/bin/env bash
# Run the tests: without arguments, provision the machine and run every tier (what CI
# runs); with arguments, only pytest with them (nothing installed with apt, nothing built).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

usage() {
  cat <<USAGE
Usage: ./run_tests.sh                    provision, then every tier (what CI runs)
       ./run_tests.sh [pytest arguments] only pytest (after a venv refresh): no apt, no build
       ./run_tests.sh --provision-only   only the provisioning (scripts/provision.sh)

Provisioning (scripts/provision.sh): .venv with the runtime and test packages
(scripts/setup_env.sh --dev); Chromium, nginx, iptables, Prometheus, redis-server, cmake and g++
with apt when missing (root); the Redis module and the C++ runner built. Each step is
a no-op when already done. Tests start real servers on free ports in temporary
folders and stop them again by PID.

Without arguments: provisioning, then the default tier (every test but the container
  tier; about 20 minutes on 2 shared cores), then the container tier as a second stage
  (tests/containers, -m containers: docker.io and debootstrap installed with apt when
  missing, our own dockerd, a one-node Swarm; about 5 minutes), then the multi-node
  tier as a third stage (tests/multinode, -m multinode: docker-registry with apt when
  missing, a 3-node Swarm, one engine per network namespace, faults under load; 8 minutes
  on a quiet machine, up to 21 on a busy one; FIZBUZ_TEST_MULTINODE=0 skips it).
With arguments: only pytest with them; the venv is refreshed (a no-op when current),
  nothing is installed with apt and nothing is built. Provision first for the slow
  tier on a fresh machine (./run_tests.sh --provision-only), e.g.
  ./run_tests.sh -m "not slow"    the quick tier, about 2 minutes after set-up (2 cores);
                                  unit tests, the lint, one shared MMS end to end. Left
                                  out as slow: whatever needs apt or a build (browser,
                                  nginx fleet, Prometheus, Redis, C++), fault and soak
                                  runs, servers of a test's own (tests/conftest.py)
  ./run_tests.sh -m slow          the rest of the default tier
  ./run_tests.sh -m containers tests/containers   the container tier alone
  ./run_tests.sh -m multinode tests/multinode     the multi-node tier alone
  ./run_tests.sh tests/unit -x    any pytest arguments
Every test has a timeout (pytest-timeout, pyproject.toml). Hypothesis replays fixed
examples when CI is set (profile "ci"; HYPOTHESIS_PROFILE=dev|ci chooses).
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --provision-only)
    [ "$#" -eq 1 ] || die "--provision-only takes no other argument"
    exec "$ROOT/scripts/provision.sh" ;;
esac

cd "$ROOT"
if [ "$#" -gt 0 ]; then
  ensure_venv --dev
  exec "$PY" -m pytest "$@"
fi
"$ROOT/scripts/provision.sh"
"$PY" -m pytest --durations=15  # the slowest tests listed at the end: where the tier's time goes
# Second stage: the container tier (its own dockerd, a one-node Swarm, images built
# from a debootstrapped Debian base); progress lines as it goes.
say "second stage: the container tier (-m containers, about 5 minutes)"
"$ROOT/serving/containers/setup_docker.sh"
"$PY" -m pytest -m containers tests/containers -o log_cli=true --log-cli-level=INFO
# Third stage: the multi-node tier (three engines in network namespaces of their own,
# a registry, faults under load); FIZBUZ_TEST_MULTINODE=0 skips it.
if [ "$("$PY" -m fizbuz.settings get test_multinode)" != 1 ]; then
  say "third stage skipped (FIZBUZ_TEST_MULTINODE=0): the multi-node tier"
  exit 0
fi
say "third stage: the multi-node tier (-m multinode, 6 to 8 minutes on a quiet machine, up to 21 on a busy one)"
exec "$PY" -m pytest -m multinode tests/multinode -o log_cli=true --log-cli-level=INFO
