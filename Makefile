# The README's two commands live here: `make run` and `make test`. `make setup` is what both
# call first; it is idempotent (a stamp file skips it when nothing it depends on changed).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
STAMP := $(VENV)/.setup-done
# Debian packages: PortAudio for sounddevice, PulseAudio + the ALSA pulse plugin for the audio
# tests, iproute2 for the multi-host tests, cmake/ninja/g++ to build llama-cpp-python.
APT_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils iproute2 \
	cmake ninja-build g++ git
# Go in without their declared dependencies: cosyvoice-minicpmo asks for onnxruntime-gpu and a CUDA
# torch; openai-whisper asks for triton. What their modules really import is in pyproject's extras.
NODEPS_PACKAGES := cosyvoice-minicpmo==0.1.0 openai-whisper==20250625

.PHONY: setup system-packages test lint typecheck run up down bench clean-venv
setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-packages
	@echo "==> python environment in $(VENV)"
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip wheel setuptools
	@echo "==> torch (CPU build where no GPU wheel is wanted; pinned so nothing pulls a CUDA build)"
	@$(PIP) install -q "torch==2.13.0"
	@echo "==> project and engines (llama-cpp-python builds from source the first time: ~4 min)"
	@$(PIP) install -q -e ".[translate,synthesize,playback,dev]"
	@$(PIP) install -q --no-deps $(NODEPS_PACKAGES)
	@$(VPY) -c "import zmq, msgpack, llama_cpp, torch, cosyvoice.flow.flow, pyopenjtalk; print('==> setup ok: pyzmq', zmq.__version__, '| llama-cpp-python', llama_cpp.__version__, '| torch', torch.__version__)"
	@touch $(STAMP)

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "==> system packages present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "==> apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "!! missing system packages:$$missing  (run: sudo apt-get install$$missing)"; fi

test: setup
	@$(MAKE) --no-print-directory lint typecheck
	$(VPY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

run: setup
	$(VENV)/bin/stream-tts up
	@echo "==> pipeline up. Try: $(VENV)/bin/stream-tts say 'Hello from stream-tts.'   Stop: $(VENV)/bin/stream-tts down"

up: run
down:
	$(VENV)/bin/stream-tts down

bench: setup
	$(VPY) bench/bus_hop.py

clean-venv:
	rm -rf $(VENV)
