#!/usr/bin/env bash
# Provision this machine for every test tier: the venv, the Debian packages (apt, root)
# and the builds. Kept apart from running tests so that a test run with arguments
# (./run_tests.sh -m "not slow") installs and builds nothing; ./run_tests.sh without
# arguments runs this first, so a fresh machine still needs one command.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/provision.sh [-h]        (also: ./run_tests.sh --provision-only)

Each step is a quick no-op when its part is already in place:
  1. .venv with the runtime and test packages (scripts/setup_env.sh --dev);
  2. Chromium for the browser test (scripts/setup_browser.sh, apt);
  3. nginx for the front door's tests (serving/front/setup_nginx.sh, apt) and iptables
     for MMS's owner-only management rule (scripts/common.sh ensure_management_guard, apt);
  4. Prometheus for the metrics tests (serving/metrics/setup_prometheus.sh, apt);
  5. redis-server, redis-sentinel, cmake and g++, the Redis module's build and the
     redisai client's venv (serving/redis/setup.sh, apt);
  6. the C++ LibTorch runner (cpp/build.sh; one to two minutes the first time);
  7. the Redis module's AddressSanitizer + UBSan build (build/redis-asan) that
     tests/redis/test_redis_sanitized.py loads (several minutes the first time);
  8. TorchServe's own venv for its start test and bench (bench/torchserve/setup.sh,
     about two minutes the first time).
The container tier's docker.io and debootstrap are not here: ./run_tests.sh installs
them before its second stage (serving/containers/setup_docker.sh).
apt-get needs root, as in CI.
USAGE
}
help_or_no_arguments "$@"

ensure_venv --dev
"$ROOT/scripts/setup_browser.sh"
"$ROOT/serving/front/setup_nginx.sh"
ensure_management_guard
"$ROOT/serving/metrics/setup_prometheus.sh"
"$ROOT/serving/redis/setup.sh"
say "building the C++ runner"
# Quiet when it works; the build's output when it does not.
build_log=$("$ROOT/cpp/build.sh" 2>&1) || { echo "$build_log" >&2; die "building the C++ runner failed"; }
say "building the Redis module with AddressSanitizer + UBSan (build/redis-asan)"
asan_log=$(FIZBUZ_REDIS_SANITIZE=ON FIZBUZ_REDIS_BUILD_DIR="$ROOT/build/redis-asan" "$ROOT/serving/redis/build.sh" 2>&1) ||
  { echo "$asan_log" >&2; die "the sanitizer build of the Redis module failed"; }
"$ROOT/bench/torchserve/setup.sh"
say "provisioned: every test tier can run"
