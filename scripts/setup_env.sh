#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with pinned packages.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FIZBUZ_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

usage() {
  cat <<USAGE
Usage: scripts/setup_env.sh [--dev]

Creates $VENV (if missing) and installs the pinned packages into it:
requirements.txt, plus requirements-dev.txt with --dev, all constrained by
constraints.txt. Re-running it is quick: it does nothing when the installed
set already matches the requirement files.

Environment:
  FIZBUZ_VENV   where the virtual environment lives (default: $ROOT/.venv)
  PYTHON        the Python 3.11 used to create it (default: python3)
USAGE
}

REQUIREMENTS=$ROOT/requirements.txt
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --dev) REQUIREMENTS=$ROOT/requirements-dev.txt ;;
  "") ;;
  *) echo "setup_env.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

if ! command -v java >/dev/null 2>&1; then
  cat >&2 <<MSG
setup_env.sh: Java was not found on PATH. MXNet Model Server's frontend needs a
Java runtime (17 is tested). On Debian/Ubuntu:  apt-get install -y openjdk-17-jre-headless
MSG
  exit 1
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup_env.sh: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$py_version" != "3.11" ]; then
  echo "setup_env.sh: warning: tested with Python 3.11, found $py_version" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# The stamp holds a hash of every file that decides the installed set; a
# matching stamp means there is nothing to do.
stamp_file=$VENV/.fizbuz-installed
wanted=$( (cat "$ROOT/requirements.txt" "$REQUIREMENTS" "$ROOT/constraints.txt" "$ROOT/pyproject.toml"; echo "$ROOT") \
  | sha256sum | cut -d' ' -f1)
if [ -f "$stamp_file" ] && grep -qx "$wanted" "$stamp_file"; then
  echo "==> $VENV is up to date"
  exit 0
fi

echo "==> installing pinned packages from $(basename "$REQUIREMENTS") (first run takes about a minute)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$REQUIREMENTS" -c "$ROOT/constraints.txt"
# The project itself, editable: its rooms (fizbuz, serving, loadtest, ...) import
# as packages from this checkout, with no sys.path edits.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
"$VENV/bin/python" -c 'import mxnet, torch, onnx, mms, model_archiver, fizbuz.contract, serving.mms.cli' \
  || { echo "setup_env.sh: the installed packages do not import; see the errors above" >&2; exit 1; }
echo "$wanted" >> "$stamp_file"
echo "==> $VENV ready"
