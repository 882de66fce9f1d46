#!/usr/bin/env bash
# Make sure Debian's nginx is installed (the front door); a no-op when it is.
set -euo pipefail

APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}
PACKAGES=(nginx)
[ "${WITH_WRK:-0}" = 1 ] && PACKAGES+=(wrk)

usage() {
  cat <<USAGE
Usage: serving/front/setup_nginx.sh [-h]

Checks that nginx (and wrk with WITH_WRK=1, for bench/front_cost.py) is installed;
installs what is missing with apt-get (needs root). The fleet never uses the system
nginx service: it runs its own nginx with its own prefix, pid, temp and log folders,
so the Debian package's default site is left as it is (and not started here).

Environment:
  WITH_WRK          1 also installs wrk (default: 0)
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg (default: 300)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "setup_nginx.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

missing=()
for package in "${PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_nginx.sh: missing ${missing[*]}; install as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "==> installing ${missing[*]} with apt-get (one time)"
apt_options=(-o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: the package must not start the system nginx on port 80.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
fi
trap '[ "$added_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get "${apt_options[@]}" update -qq && \
       apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
echo "==> $(nginx -v 2>&1)"
