#!/usr/bin/env bash
# Start, stop or inspect the Flask + gunicorn baseline: a thin wrapper over serving/flask/cli.py (-h there).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
[ -x "$PY" ] || die "no virtual environment at $VENV: run scripts/setup_env.sh --dev"
exec "$PY" -m serving.flask.cli "$@"
