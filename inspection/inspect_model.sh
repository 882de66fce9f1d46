#!/usr/bin/env bash
# Serve the ONNX graph in netron on loopback: a thin wrapper over inspection/netron_server.py (-h there).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
# netron comes with the dev set; set it up on first use, as before.
[ -x "$VENV/bin/netron" ] || ensure_venv --dev
# exec: the Python process itself gets Ctrl-C and the other stop signals, and
# installs its own handlers (a bash trap cannot catch a SIGINT ignored at entry).
exec "$PY" -m inspection.netron_server "$@"
