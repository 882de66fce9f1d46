#!/usr/bin/env bash
# Make sure Debian's Prometheus server is installed (for the metrics test and the picture).
set -euo pipefail

PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}

usage() {
  cat <<USAGE
Usage: serving/metrics/setup_prometheus.sh [-h]

Checks that the Prometheus server runs; when it is missing, installs Debian's
package (apt-get update && apt-get install -y --no-install-recommends prometheus;
needs root and apt). Only the binary is used: the tests and the picture start
their own Prometheus on a free port with a throw-away config and data folder.
Debian's package also enables a system service on :9090; this script stops and
disables it, so nothing listens that we did not start. Re-runs are quick.

Environment:
  PROMETHEUS        the binary to check (default: /usr/bin/prometheus)
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg to finish (default: 300)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "setup_prometheus.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

prometheus_version() {
  "$PROMETHEUS" --version 2>&1 | head -n 1
}

if version=$(prometheus_version) && [ -n "$version" ]; then
  echo "==> prometheus: $version"
  exit 0
fi
if [ "$PROMETHEUS" != /usr/bin/prometheus ]; then
  echo "setup_prometheus.sh: PROMETHEUS=$PROMETHEUS does not run; fix the path or unset it" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup_prometheus.sh: prometheus is missing; install it as root:" \
       "apt-get update && apt-get install -y --no-install-recommends prometheus" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 \
  || { echo "setup_prometheus.sh: prometheus is missing and there is no apt-get to install it" >&2; exit 1; }

echo "==> installing prometheus with apt-get (one time, about a minute)"
apt_options=(-o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101: the package's service is not started by the install.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
trap '[ -z "$own_policy" ] || rm -f "$policy"' EXIT
apt-get "${apt_options[@]}" update -qq
apt-get "${apt_options[@]}" install -y -qq --no-install-recommends prometheus >/dev/null
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
version=$(prometheus_version) \
  || { echo "setup_prometheus.sh: prometheus was installed but '$PROMETHEUS --version' fails" >&2; exit 1; }
echo "==> prometheus: $version"
