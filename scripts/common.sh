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

# A setting's value in a script that runs before (or without) the venv: the
# FIZBUZ_ name, else the old name (with a deprecation line), else the default.
# The names and defaults are those of fizbuz/settings.py (a test compares them);
# with the venv there, `"$PY" -m fizbuz.settings get KEY` reads the table itself.
setting() {
  local new=$1 old=$2 default=$3
  if [ -n "${!new:-}" ]; then
    echo "${!new}"
  elif [ -n "$old" ] && [ -n "${!old:-}" ]; then
    echo "$(basename "$0"): $old is deprecated: set $new instead (same value)" >&2
    echo "${!old}"
  else
    echo "$default"
  fi
}

# Create or refresh the venv (a no-op when it is up to date).
ensure_venv() {
  "$ROOT/scripts/setup_env.sh" "$@"
}

# Started by root, MMS closes its management API to other local users with an
# iptables owner rule (serving/mms/guard.py; the fleet adds one in each host's
# namespace). A fresh Debian has no iptables (docker.io brings it, but only the
# container tier installs that), so root installs it at its pin; a no-op when it is
# there. Others cannot add the rule anyway: the server warns instead.
ensure_management_guard() {
  if [ "$(id -u)" = 0 ]; then
    "$ROOT/scripts/debian_packages.sh" iptables
  fi
}
