#!/usr/bin/env bash
# Create .venv-cosyvoice: CosyVoice's real code, for the real-code test tier of the in-process voice.
#
# Why a third venv: CosyVoice is not a package of its own on PyPI, but `cosyvoice2-fr-infer`
# (Apache-2.0) vendors upstream's `cosyvoice/` package (cli, flow, hifigan, llm, transformer) and
# Matcha-TTS's `matcha/`. Its declared requirements cannot be installed as they are (deepspeed,
# onnxruntime-gpu, numpy==1.26, transformers==4.40.1), and its top-level `cosyvoice` and
# `matcha` must not shadow anything in the main environment. So it goes into its own venv with
# --no-deps, next to the packages its import chain really needs (listed below, each for a
# reason). tests/test_cosyvoice_real.py runs tests/support/cosyvoice_real_check.py in it.
#
# Idempotent: when the stamp matches the pins below, it exits at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${COSYVOICE_VENV:-$ROOT/.venv-cosyvoice}"
PYTHON="${PYTHON:-python3}"
# torch comes from the repo's constraints file (the CPU wheel), like the main venv's.
PINS=(
  "torch"
  "numpy==2.4.6" "scipy==1.17.1" "soundfile==0.14.0" "av==18.1.0"  # our adapter's audio I/O
  "onnxruntime==1.32.0" "onnx==1.23.2"          # campplus / speech tokenizer; onnx builds tiny ones
  "transformers==5.24.0" "tokenizers==0.23.3"   # the Qwen2 LLM and its tokenizer
  "hyperpyyaml==1.2.3"                          # the model's yaml
  "modelscope==1.40.2"                          # imported by cosyvoice/cli/cosyvoice.py
  "numba==0.68.1" "tiktoken==0.14.0" "more-itertools==11.2.1"  # openai-whisper's (installed --no-deps)
  "inflect==7.6.0" "wetextprocessing==1.2.0" "pynini==2.1.7"   # the text frontend (no ttsfrd)
  "einops==0.8.2" "conformer==0.3.2" "diffusers==0.42.1"       # flow decoder (matcha components)
  "omegaconf==2.3.1" "hydra-core==1.3.8" "lightning==2.6.6" "rich==15.0.0"  # matcha.utils, imported
  "gdown==6.5.1" "wget==3.2" "matplotlib==3.11.2" "librosa==0.11.0"  # by the flow and mel code
)
NO_DEPS=(
  "cosyvoice2-fr-infer==0.1.5"  # upstream's cosyvoice/ + matcha/; its own requirements are above
  "openai-whisper==20250625"    # log_mel_spectrogram; --no-deps: it requires triton (GPU, 150+ MB)
  "torchaudio==2.11.0"          # kaldi fbank and Resample (pure Python); it pins torch==2.11
)
STAMP="$VENV/.cosyvoice-installed"
WANT="${PINS[*]} ${NO_DEPS[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  touch "$STAMP"  # newer than this script for make
  echo "cosyvoice venv ready: $VENV"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-input -c "$ROOT/constraints.txt")
"${PIP[@]}" "${PINS[@]}"
"${PIP[@]}" --no-deps "${NO_DEPS[@]}"
# PyPI's torchaudio wheel has a C++ extension linked against the CUDA build of torch, which the CPU
# torch here cannot load. CosyVoice uses only torchaudio's pure-Python parts (compliance.kaldi.fbank,
# transforms.Resample), and torchaudio runs without its extension when the library files are absent
# (torchaudio/_extension/utils.py `_load_lib`: "False if the library file is not found").
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -f "$SITE"/torchaudio/lib/*.so
# Smoke test: upstream's import chain loads (no model, no network).
"$VENV/bin/python" -c "import cosyvoice.cli.cosyvoice"
echo "$WANT" > "$STAMP"
echo "cosyvoice venv ready: $VENV"
