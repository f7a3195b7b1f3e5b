# The README's two commands live here: `make run` and `make test`. `make setup` is what both
# call first; it is idempotent (a stamp file skips it when nothing it depends on changed).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
STAMP := $(VENV)/.setup-done
# Platform decisions (apt or Homebrew packages, llama.cpp's Metal/CUDA/CPU build, the torch pin)
# live in stream_tts/setup_plan.py, run with the system python3 before the venv exists; it documents
# every branch and `python3 stream_tts/setup_plan.py describe` shows what this machine gets.
PLAN := python3 stream_tts/setup_plan.py
# Go in without their declared dependencies: cosyvoice-minicpmo asks for onnxruntime-gpu and a CUDA
# torch; openai-whisper asks for triton. What their modules really import is in pyproject's extras.
NODEPS_PACKAGES := cosyvoice-minicpmo==0.1.0 openai-whisper==20250625

.PHONY: setup system-packages test lint typecheck run up down bench clean-venv
setup: $(STAMP)

$(STAMP): pyproject.toml Makefile stream_tts/setup_plan.py
	@$(MAKE) --no-print-directory system-packages
	@echo "==> python environment in $(VENV)"
	@command -v $(PY) >/dev/null || { echo "E setup: $(PY) not found: $$($(PLAN) python_hint); or name one: make setup PY=/path/to/python3.11"; exit 1; }
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip wheel setuptools
	@echo "==> torch (pinned: the CPU build on a CPU box, CUDA from PyPI on Linux+NVIDIA, MPS on a Mac)"
	@spec="$$($(PLAN) torch_spec)"; index="$$($(PLAN) torch_index)"; \
	  $(PIP) install -q "$$spec" 2>/dev/null || { test -n "$$index" && \
	  echo "==> $$spec is not in this machine's pip sources: from $$index" && \
	  $(PIP) install -q "$$spec" --extra-index-url "$$index"; }
	@# llama-cpp-python on its own, not quiet: pip shows it building (minutes from source, the first time)
	@cmake_args="$$($(PLAN) cmake_args)"; if [ -n "$$cmake_args" ]; then \
	  echo "==> llama-cpp-python built with $$cmake_args (from source: minutes)"; \
	  CMAKE_ARGS="$$cmake_args" $(PIP) install --no-cache-dir "$$($(PLAN) llama_spec)"; \
	else echo "==> llama-cpp-python (built from source the first time: ~4 min on 2 cores)"; \
	  $(PIP) install "$$($(PLAN) llama_spec)"; fi
	@echo "==> project and engines"
	@$(PIP) install -q -e ".[translate,synthesize,playback,eval,dev]"
	@$(PIP) install -q --no-deps $(NODEPS_PACKAGES)
	@$(VPY) -c "import zmq, msgpack, llama_cpp, torch, cosyvoice.flow.flow, pyopenjtalk; print('==> setup ok: pyzmq', zmq.__version__, '| llama-cpp-python', llama_cpp.__version__, '| torch', torch.__version__)"
	@touch $(STAMP)

system-packages:
	@$(PLAN) system-packages

# mypy takes a minute on a cold cache: it runs beside pytest, whose first test (the chaos soak,
# ~3 min) mostly waits on node restarts; its report comes after pytest's, and either failing fails
test: setup
	@$(MAKE) --no-print-directory lint
	@log=$$(mktemp); $(VENV)/bin/mypy > "$$log" 2>&1 & mypy_pid=$$!; \
	  echo "$(VPY) -m pytest -q   (mypy beside it)"; $(VPY) -m pytest -q; tests=$$?; \
	  wait $$mypy_pid; types=$$?; echo "==> mypy"; cat "$$log"; rm -f "$$log"; \
	  test $$tests -eq 0 -a $$types -eq 0

# lint-imports: the layering contracts of pyproject.toml ([tool.importlinter]; docs/architecture.md)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy

# models (asks before many GB; YES=1 agrees), doctor, up, and a spoken greeting: stream_tts/first_run.py
run: setup
	$(VENV)/bin/stream-tts run $(if $(YES),--yes)

up: run
down:
	$(VENV)/bin/stream-tts down

bench: setup
	$(VPY) bench/bus_hop.py

clean-venv:
	rm -rf $(VENV)
