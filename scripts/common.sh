# Shared by the project's bash scripts: paths, messages, and the venv.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FIZBUZ_VENV:-$ROOT/.venv}
PY=$VENV/bin/python

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
say() { echo "==> $*"; }

# Create or refresh the venv (a no-op when it is up to date).
ensure_venv() {
  "$ROOT/scripts/setup_env.sh" "$@"
}
