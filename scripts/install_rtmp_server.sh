#!/usr/bin/env bash
# Install a local RTMP server (Debian nginx + its RTMP module), only when missing, for the livestream
# tests and benchmarks and for trying `avatar live` locally (tests/support/local_rtmp_server.py runs it
# as a child on 127.0.0.1 with its own config; the system nginx service is not used).
set -euo pipefail
missing=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then missing+=(nginx-light); fi
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
bash "$(dirname "$0")/apt_install.sh" "${missing[@]}"
