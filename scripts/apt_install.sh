#!/usr/bin/env bash
# Install the given Debian packages with apt-get (sudo when not root); one clear error elsewhere.
# Shared by ensure_system_packages.sh and install_browser.sh, which decide what is missing.
set -euo pipefail
[ $# -gt 0 ] || exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: please install these system packages yourself: $*" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing system packages: $*"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
