#!/usr/bin/env bash
# Install headless Chromium (for the live page's browser test) and CJK fonts, only when missing.
# Debian/Ubuntu packages through apt, like ensure_system_packages.sh; idempotent, safe to re-run.
set -euo pipefail
missing=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  missing+=(chromium)
fi
if command -v fc-list >/dev/null 2>&1; then
  fc-list :lang=zh 2>/dev/null | grep -q . || missing+=(fonts-noto-cjk)
elif ! dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'install ok installed'; then
  missing+=(fonts-noto-cjk)
fi
bash "$(dirname "$0")/apt_install.sh" "${missing[@]}"
