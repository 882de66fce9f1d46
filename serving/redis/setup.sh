#!/usr/bin/env bash
# Set up everything the Redis module needs; idempotent (a re-run does nothing new).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../scripts/common.sh"
REDISAI_VENV=${FIZBUZ_REDISAI_VENV:-$ROOT/.venv-redisai}
PYTHON=${PYTHON:-python3}

usage() {
  cat <<USAGE
Usage: serving/redis/setup.sh [-h]

1. installs Debian's redis-server and redis-sentinel (7.0), cmake and g++ when
   missing, at their pins (scripts/debian_packages.sh, apt-get, root);
2. builds the module (serving/redis/build.sh) against the venv's LibTorch;
3. writes the TorchScript model (fizbuz.contract.TORCHSCRIPT_PATH, build/fizbuz.pt)
   with python -m fizbuz.torchscript when it is missing;
4. creates $REDISAI_VENV with the redisai 1.3.0 client, pinned
   (serving/redis/requirements-redisai.txt: it needs redis<5 and setuptools<82).

Environment:
  FIZBUZ_VENV          the project venv with torch (default: $ROOT/.venv)
  FIZBUZ_REDISAI_VENV  the redisai client's venv (default: $ROOT/.venv-redisai)
  PYTHON               Python 3.11 for that venv (default: python3)
USAGE
}
help_or_no_arguments "$@"

"$ROOT/scripts/debian_packages.sh" redis-server redis-sentinel cmake g++

[ -x "$PY" ] || ensure_venv
say "building the module"
build_log=$("$HERE/build.sh" 2>&1) || { echo "$build_log" >&2; die "building the module failed"; }

# The model's path comes from the contract, not re-typed here.
torchscript=$("$PY" -m fizbuz.contract TORCHSCRIPT_PATH)
if [ ! -f "$torchscript" ]; then
  say "exporting $torchscript"
  "$PY" -m fizbuz.torchscript --quiet >/dev/null
fi

stamp=$REDISAI_VENV/.fizbuz-installed
wanted=$(sha256sum "$HERE/requirements-redisai.txt" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  say "$REDISAI_VENV is up to date"
  exit 0
fi
[ -x "$REDISAI_VENV/bin/python" ] || { say "creating $REDISAI_VENV"; "$PYTHON" -m venv "$REDISAI_VENV"; }
say "installing the redisai client into $REDISAI_VENV"
"$REDISAI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$HERE/requirements-redisai.txt" 2> >(grep -v "is ignored" >&2)
"$REDISAI_VENV/bin/python" -c 'import redisai' || die "redisai does not import in $REDISAI_VENV"
echo "$wanted" > "$stamp"
say "$REDISAI_VENV ready"
