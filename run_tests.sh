#!/usr/bin/env bash
# Set up the test environment and run every test (unit + end to end).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

usage() {
  cat <<USAGE
Usage: ./run_tests.sh [pytest arguments]

Creates or refreshes .venv with the runtime and test packages (scripts/setup_env.sh --dev),
installs Chromium for the browser test when it is missing (scripts/setup_browser.sh, apt, root),
then runs pytest on tests/: unit tests against the real built archive, and end-to-end
tests that start real servers on free ports in temporary folders and stop them again.
Extra arguments go to pytest, e.g. ./run_tests.sh tests/unit -x
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac

ensure_venv --dev
"$ROOT/scripts/setup_browser.sh"
"$ROOT/serving/redis/setup.sh"
cd "$ROOT"
exec "$PY" -m pytest "$@"
