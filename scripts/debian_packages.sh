#!/usr/bin/env bash
# Install Debian packages that are missing, at the pins of scripts/debian-packages.txt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PINS=$HERE/debian-packages.txt
source "$HERE/common.sh"
APT_LOCK_TIMEOUT=$(setting FIZBUZ_APT_LOCK_TIMEOUT APT_LOCK_TIMEOUT 300)

usage() {
  cat <<USAGE
Usage: scripts/debian_packages.sh PACKAGE... | --list

Installs the named Debian packages that are missing, each at its pin in
scripts/debian-packages.txt (an apt version glob), with apt-get (needs root).
Nothing is printed when all are installed. An installed package of another
version is kept, with a warning. Packages' services are not started by the
install (policy-rc.d answers 101 while it runs); the project starts its own
servers on free ports. --list prints the pins.

Environment:
  FIZBUZ_APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg to finish (default: 300)
USAGE
}
die() { echo "debian_packages.sh: $*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --list) grep -v '^#' "$PINS" | awk 'NF { print $1 "=" $2 }'; exit 0 ;;
  ""|-*) usage >&2; exit 2 ;;
esac

pin_of() {
  awk -v name="$1" '!/^#/ && $1 == name { print $2; found = 1 } END { exit !found }' "$PINS" \
    || die "'$1' has no pin in $PINS: add it there first"
}

missing=()
for package in "$@"; do
  pin=$(pin_of "$package")
  status=$(dpkg-query -W -f='${Status} ${Version}' "$package" 2>/dev/null || true)
  if [[ $status == "install ok installed "* ]]; then
    version=${status#install ok installed }
    # shellcheck disable=SC2053  # the pin is a glob on purpose
    [[ $version == $pin ]] || echo "debian_packages.sh: warning: $package $version installed; tested with $pin" >&2
  else
    missing+=("$package=$pin")
  fi
done
[ "${#missing[@]}" -gt 0 ] || exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  die "missing ${missing[*]}; install as root: apt-get install -y --no-install-recommends ${missing[*]}"
fi
echo "==> installing ${missing[*]} with apt-get (one time, up to a few minutes)"
apt_options=(-o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: no package starts its system service (nginx on :80, prometheus on :9090 ...).
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
fi
trap '[ "$added_policy" = 0 ] || rm -f "$policy"' EXIT
install() { apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
# The package lists may be old or absent on a fresh machine: update once and retry.
install 2>/dev/null || { apt-get "${apt_options[@]}" update -qq && install; } \
  || die "apt-get could not install ${missing[*]}"
