#!/usr/bin/env bash
# Create or refresh .venv-torchserve: TorchServe 0.12.0, its model archiver and the
# project's torch CPU wheel, pinned in bench/torchserve/requirements.txt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../../scripts/common.sh"
TS_VENV=${FIZBUZ_TORCHSERVE_VENV:-$ROOT/.venv-torchserve}
PYTHON=${PYTHON:-python3}

usage() {
  cat <<USAGE
Usage: bench/torchserve/setup.sh [-h]

Creates $TS_VENV (if missing) and installs torchserve 0.12.0,
torch-model-archiver 0.12.0 and torch 2.13.0 (the CPU wheel the serving venv uses)
with their pinned dependencies (bench/torchserve/requirements.txt). TorchServe is
only compared against (fizbuz bench torchserve), so it gets a venv of its own and
never touches the serving venv. A no-op when up to date. Needs Java 17 on PATH.

Environment:
  FIZBUZ_TORCHSERVE_VENV  where it lives (default: $ROOT/.venv-torchserve)
  PYTHON                  Python 3.11 for it (default: python3)
USAGE
}
help_or_no_arguments "$@"

command -v java >/dev/null 2>&1 || die "Java was not found on PATH (TorchServe's frontend needs Java 17)"
stamp=$TS_VENV/.fizbuz-installed
wanted=$(sha256sum < "$HERE/requirements.txt" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  say "$TS_VENV is up to date"
  exit 0
fi
[ -x "$TS_VENV/bin/python" ] || { say "creating $TS_VENV"; "$PYTHON" -m venv "$TS_VENV"; }
say "installing torchserve, torch-model-archiver and torch into $TS_VENV (a minute: torch is a local wheel)"
"$TS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$HERE/requirements.txt" 2> >(grep -v "is ignored" >&2)
"$TS_VENV/bin/python" -c 'import ts, model_archiver, torch' || die "torchserve does not import in $TS_VENV"
[ -x "$TS_VENV/bin/torchserve" ] && [ -x "$TS_VENV/bin/torch-model-archiver" ] \
  || die "$TS_VENV lacks the torchserve or torch-model-archiver command"
echo "$wanted" > "$stamp"
say "$TS_VENV ready"
