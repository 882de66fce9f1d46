#!/usr/bin/env bash
# Make sure Debian's Docker engine and debootstrap are installed (pinned); a no-op when they are.
set -euo pipefail

APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}
# The bookworm versions this project is tested with.
PINS=("docker.io=20.10.24+dfsg1-1+deb12u1+b6" "debootstrap=1.0.128+nmu2+deb12u2")

usage() {
  cat <<USAGE
Usage: serving/containers/setup_docker.sh [-h]

Checks that docker.io (dockerd 20.10 and its client) and debootstrap are installed;
installs the missing ones at the pinned versions with apt-get (root):
  ${PINS[*]}
The package's own docker service is not started (policy-rc.d 101): the stack runs its
own dockerd with its own data-root, socket and logs (serving/containers/daemon.py).

Environment:
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg (default: 300)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "setup_docker.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

missing=()
for pin in "${PINS[@]}"; do
  package=${pin%%=*}
  [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || missing+=("$pin")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_docker.sh: missing ${missing[*]}; install as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "==> installing ${missing[*]} with apt-get (one time, about a minute)"
apt_options=(-o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
fi
trap '[ "$added_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get "${apt_options[@]}" update -qq && \
       apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
echo "==> $(dockerd --version)"
