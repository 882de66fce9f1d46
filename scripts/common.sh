# Shared by the project's bash scripts: paths, messages, and the venv.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FIZBUZ_VENV:-$ROOT/.venv}
PY=$VENV/bin/python

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
say() { echo "==> $*"; }

# For scripts that take no argument but -h (each defines usage()): show the
# usage, or refuse anything else.
help_or_no_arguments() {
  case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) echo "$(basename "$0"): unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
}

# Create or refresh the venv (a no-op when it is up to date).
ensure_venv() {
  "$ROOT/scripts/setup_env.sh" "$@"
}
