#!/usr/bin/env bash
# Make sure Debian's Prometheus server is installed (for the metrics test and the picture).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
PROMETHEUS=$(setting FIZBUZ_PROMETHEUS PROMETHEUS /usr/bin/prometheus)

usage() {
  cat <<USAGE
Usage: serving/metrics/setup_prometheus.sh [-h]

Checks that the Prometheus server runs; when it is missing, installs Debian's
package at its pin (scripts/debian_packages.sh, apt-get, root). Only the binary is
used: the tests and the picture start their own Prometheus on a free port with a
throw-away config and data folder. Debian's package also enables a system service
on :9090; the install does not start it and this script disables it, so nothing
listens that we did not start. Re-runs are quick.

Environment:
  PROMETHEUS        the binary to check (default: /usr/bin/prometheus)
  FIZBUZ_APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg to finish (default: 300)
USAGE
}
help_or_no_arguments "$@"

prometheus_version() {
  "$PROMETHEUS" --version 2>&1 | head -n 1
}

if version=$(prometheus_version) && [ -n "$version" ]; then
  echo "==> prometheus: $version"
  exit 0
fi
[ "$PROMETHEUS" = /usr/bin/prometheus ] \
  || { echo "setup_prometheus.sh: FIZBUZ_PROMETHEUS=$PROMETHEUS does not run; fix the path or unset it" >&2; exit 1; }
"$ROOT/scripts/debian_packages.sh" prometheus
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
version=$(prometheus_version) \
  || { echo "setup_prometheus.sh: prometheus is installed but '$PROMETHEUS --version' fails" >&2; exit 1; }
echo "==> prometheus: $version"
