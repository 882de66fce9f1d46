#!/usr/bin/env bash
# Create or refresh .venv-clients: the Open Inference Protocol's standard
# clients (tritonclient[http,grpc]), pinned in clients/requirements.txt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../scripts/common.sh"
CLIENTS_VENV=${FIZBUZ_CLIENTS_VENV:-$ROOT/.venv-clients}
PYTHON=${PYTHON:-python3}

usage() {
  cat <<USAGE
Usage: clients/setup.sh [-h]

Creates $CLIENTS_VENV (if missing) with tritonclient[http,grpc] 2.73.0 and its
pinned dependencies (clients/requirements.txt: they clash with the project's
protobuf and numpy, hence a venv of their own), plus this project without its
dependencies (clients/v2load.py imports fizbuz_codec). A no-op when up to date.

Environment:
  FIZBUZ_CLIENTS_VENV  where it lives (default: $ROOT/.venv-clients)
  PYTHON               Python 3.11 for it (default: python3)
USAGE
}
help_or_no_arguments "$@"

stamp=$CLIENTS_VENV/.fizbuz-installed
wanted=$( (cat "$HERE/requirements.txt"; echo "$ROOT") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  say "$CLIENTS_VENV is up to date"
  exit 0
fi
[ -x "$CLIENTS_VENV/bin/python" ] || { say "creating $CLIENTS_VENV"; "$PYTHON" -m venv "$CLIENTS_VENV"; }
say "installing tritonclient into $CLIENTS_VENV"
"$CLIENTS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$HERE/requirements.txt" 2> >(grep -v "is ignored" >&2)
"$CLIENTS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT" \
  2> >(grep -v "is ignored" >&2)
"$CLIENTS_VENV/bin/python" -c 'import tritonclient.http, tritonclient.grpc, fizbuz_codec' \
  || die "tritonclient does not import in $CLIENTS_VENV"
echo "$wanted" > "$stamp"
say "$CLIENTS_VENV ready"
