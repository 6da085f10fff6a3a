#!/usr/bin/env bash
# Install the few system packages the toolkit needs, only when missing (Debian/Ubuntu).
# ffmpeg encodes the H.264 + AAC output; libGL is loaded by the OpenCV build that mediapipe pulls in.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || missing+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0' || missing+=(libglib2.0-0)
bash "$(dirname "$0")/apt_install.sh" "${missing[@]}"
