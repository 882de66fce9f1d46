#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed (for the netron browser test).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CHROMIUM=$(setting FIZBUZ_CHROMIUM CHROMIUM /usr/bin/chromium)

usage() {
  cat <<USAGE
Usage: scripts/setup_browser.sh [-h]

Checks that Chromium and two fonts are installed and that Chromium runs; installs
what is missing from Debian's packages at their pins (scripts/debian_packages.sh,
apt-get, root). Re-runs are quick: nothing is installed when everything is there.
Playwright (pinned in requirements-dev.txt) drives this Chromium through its
executable_path: no chromium-driver, and no \`playwright install\` download.

Environment:
  CHROMIUM          the browser binary to check and use (default: /usr/bin/chromium)
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg to finish (default: 300)
USAGE
}
help_or_no_arguments "$@"

browser_version() {
  "$CHROMIUM" --version 2>/dev/null
}

if [ "$CHROMIUM" = /usr/bin/chromium ]; then
  # fonts-dejavu-core: text in screenshots needs a font; fonts-wqy-microhei: the
  # 〈 〉 brackets netron draws around tensor shapes.
  "$ROOT/scripts/debian_packages.sh" chromium fonts-dejavu-core fonts-wqy-microhei
fi
# A browser of the user's choice is only checked.
version=$(browser_version) \
  || { echo "setup_browser.sh: '$CHROMIUM --version' fails; reinstall it (apt-get install --reinstall chromium) or set CHROMIUM" >&2; exit 1; }
echo "==> browser: $version"
