#!/usr/bin/env bash
# Set up everything the Redis module needs; idempotent (a re-run does nothing new).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${FIZBUZ_VENV:-$ROOT/.venv}
REDISAI_VENV=${FIZBUZ_REDISAI_VENV:-$ROOT/.venv-redisai}
PYTHON=${PYTHON:-python3}

usage() {
  cat <<USAGE
Usage: serving/redis/setup.sh [-h]

1. installs Debian's redis-server and redis-sentinel (7.0) with apt-get when
   missing (needs root), and checks for cmake and g++;
2. builds the module (serving/redis/build.sh) against the venv's LibTorch;
3. writes build/fizbuz.pt with export_torchscript.py when it is missing;
4. creates $REDISAI_VENV with the redisai 1.3.0 client, pinned
   (serving/redis/requirements-redisai.txt: it needs redis<5 and setuptools<82).

Environment:
  FIZBUZ_VENV          the project venv with torch (default: $ROOT/.venv)
  FIZBUZ_REDISAI_VENV  the redisai client's venv (default: $ROOT/.venv-redisai)
  PYTHON               Python 3.11 for that venv (default: python3)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "setup.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac
die() { echo "setup.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

if ! command -v redis-server >/dev/null || ! command -v redis-sentinel >/dev/null \
   || ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  [ "$(id -u)" = 0 ] || die "redis-server, redis-sentinel, cmake or g++ missing: run as root or apt-get install -y redis-server redis-sentinel cmake g++"
  say "installing redis-server, redis-sentinel, cmake and g++ with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q redis-server redis-sentinel cmake g++ >/dev/null
fi
redis-server --version | grep -q ' v=7\.' || say "warning: tested with redis-server 7.0, found: $(redis-server --version)"

[ -x "$VENV/bin/python" ] || "$ROOT/scripts/setup_env.sh"
say "building the module"
build_log=$("$HERE/build.sh" 2>&1) || { echo "$build_log" >&2; die "building the module failed"; }

if [ ! -f "$ROOT/build/fizbuz.pt" ]; then
  say "exporting build/fizbuz.pt"
  (cd "$ROOT" && "$VENV/bin/python" export_torchscript.py --quiet >/dev/null)
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
