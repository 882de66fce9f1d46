#!/usr/bin/env bash
# Make sure Debian's nginx is installed (the front door); a no-op when it is.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"

usage() {
  cat <<USAGE
Usage: serving/front/setup_nginx.sh [-h]

Checks that nginx, its njs module (libnginx-mod-http-js: the Open Inference
Protocol's routing, serving/front/door.js) and its Lua module (libnginx-mod-http-lua
with -ndk and lua-resty-core: the retry budget, serving/front/retry_budget.lua) are installed; installs them when missing, at their pins
(scripts/debian_packages.sh, apt-get, root). The fleet never uses the system nginx service: it runs its own nginx with its own prefix,
pid, temp and log folders, so the package's default site is left as it is (and not
started here).

Environment:
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg (default: 300)
USAGE
}
help_or_no_arguments "$@"

"$ROOT/scripts/debian_packages.sh" nginx libnginx-mod-http-js libnginx-mod-http-ndk libnginx-mod-http-lua lua-resty-core
