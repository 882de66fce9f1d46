#!/usr/bin/env bash
# Make sure Debian's Docker engine and debootstrap are installed (pinned); a no-op when they are.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"

usage() {
  cat <<USAGE
Usage: serving/containers/setup_docker.sh [-h]

Checks that docker.io (dockerd 20.10 and its client), debootstrap and docker-registry
(the multi-node Swarm's registry) are installed;
installs the missing ones at their pins (scripts/debian-packages.txt) with apt-get
(scripts/debian_packages.sh, root). The package's own docker service is not started
(policy-rc.d 101): the stack runs its own dockerd with its own data-root, socket and
logs (serving/containers/daemon.py).

Environment:
  APT_LOCK_TIMEOUT  seconds apt-get waits for another apt/dpkg (default: 300)
USAGE
}
help_or_no_arguments "$@"

"$ROOT/scripts/debian_packages.sh" docker.io debootstrap docker-registry
