#!/usr/bin/env bash
# Scale the model's workers through the MMS management API and print the worker table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

usage() {
  cat <<USAGE
Usage: ./scale_workers.sh N           exactly N workers (min_worker = max_worker = N)
       ./scale_workers.sh MIN MAX     between MIN and MAX workers
       ./scale_workers.sh -h

Sends PUT /models/fizbuz_package?min_worker=..&max_worker=..&synchronous=true to the
management API, waits until the workers are READY, and prints the worker table.
N, MIN and MAX are whole numbers, 1 <= MIN <= MAX <= 16.

Environment:
  FIZBUZ_MANAGEMENT_PORT  management API port [the one start_mms.sh used, else 8081]
  FIZBUZ_RUN_DIR   run folder of the server [$ROOT/run]
  FIZBUZ_MMS_TIMEOUT      seconds to wait for the workers [120]
  FIZBUZ_SCALE_SINGLE     1 scales fizbuz_package_single (the batch-1 registration of
                   FIZBUZ_SINGLE_WORKERS=N ./start_mms.sh) instead [0]
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[ $# -le 2 ] || { usage >&2; exit 2; }
for value in "$@"; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "'$value' is not a whole number (see -h)"
done
[ -x "$PY" ] || die "no virtual environment at $VENV: run ./start_mms.sh first"
exec "$PY" -m serving.mms.cli scale "$@"
