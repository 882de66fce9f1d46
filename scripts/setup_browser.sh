#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed (for the netron browser test).
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}

usage() {
  cat <<USAGE
Usage: scripts/setup_browser.sh [-h]

Checks that Chromium and two fonts are installed and that Chromium runs; installs
what is missing from Debian's packages (apt-get update && apt-get install -y chromium
fonts-dejavu-core fonts-wqy-microhei; needs root and apt). Re-runs are quick: nothing
is installed when everything is there.
Playwright (pinned in requirements-dev.txt) drives this Chromium through its
executable_path: no chromium-driver, and no `playwright install` download.

Environment:
  CHROMIUM          the browser binary to check and use (default: /usr/bin/chromium)
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg to finish (default: 300)
USAGE
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "setup_browser.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

# fonts-dejavu-core: text in screenshots needs a font; fonts-wqy-microhei: the
# 〈 〉 brackets netron draws around tensor shapes.
PACKAGES=(chromium fonts-dejavu-core fonts-wqy-microhei)

browser_version() {
  "$CHROMIUM" --version 2>/dev/null
}

missing_packages() {
  local package
  for package in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] \
      || echo "$package"
  done
}

if [ "$CHROMIUM" != /usr/bin/chromium ]; then
  # A browser of the user's choice: only check that it runs.
  version=$(browser_version) \
    || { echo "setup_browser.sh: CHROMIUM=$CHROMIUM does not run; fix the path or unset it" >&2; exit 1; }
  echo "==> browser: $version"
  exit 0
fi

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -eq 0 ] && version=$(browser_version); then
  echo "==> browser: $version"
  exit 0
fi
[ "${#missing[@]}" -gt 0 ] || missing=(chromium)  # installed but broken: reinstall below

if [ "$(id -u)" != 0 ]; then
  echo "setup_browser.sh: missing ${missing[*]}; install as root:" \
       "apt-get update && apt-get install -y ${PACKAGES[*]}" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 \
  || { echo "setup_browser.sh: missing ${missing[*]} and there is no apt-get to install them" >&2; exit 1; }

echo "==> installing ${missing[*]} with apt-get (one time, about a minute)"
apt_options=(-o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -o Dpkg::Use-Pty=0)
export DEBIAN_FRONTEND=noninteractive
apt-get "${apt_options[@]}" update -qq
apt-get "${apt_options[@]}" install -y -qq --no-install-recommends --reinstall "${missing[@]}" >/dev/null
version=$(browser_version) \
  || { echo "setup_browser.sh: chromium was installed but '$CHROMIUM --version' fails" >&2; exit 1; }
echo "==> browser: $version"
