# bmc-hand: set-up and jobs. Everything runs in a virtual environment in the checkout.
#   make reproduce  create .venv if needed, install everything, make the synthetic data and run
#                   every notebook through papermill (PRESET=cpu by default; PRESET=gpu on a GPU
#                   machine; FORCE=1 redoes finished steps)
#   make test       create .venv if needed, install the project + all extras, run pytest
#   make test-quick the same without the tests marked slow (a quick loop while editing)
#   make lint       ruff (configured in pyproject.toml); .ci/run runs it after the tests
#   make bench      print BMC loss / decomposition throughput
#   make install    create .venv if needed and install the project with all extras (no tests)
#
# TORCH_SPEC is the PyTorch requirement pip installs first (default torch==2.13.0). On this
# project's own machines that pin resolves to a CPU wheel the machine provides locally. On
# your Linux machine the pin alone brings PyTorch's default build from PyPI, the CUDA one
# (several GB); for a CPU-only install point pip at PyTorch's CPU wheel index:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# TORCH_INDEX is empty (off) by default. On a GPU machine any CUDA build works:
#   make test TORCH_SPEC=torch
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PRESET ?= cpu
FORCE ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-quick lint bench reproduce clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)",) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[data,fit,dev,notebooks,browser]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) -m bmclib.bench.cli bench --json results/benchmarks/bmc_loss.json

reproduce: $(STAMP)
	$(PY) -m bmclib.bench.cli reproduce --preset $(PRESET) $(if $(FORCE),--force,)

clean-venv:
	rm -rf $(VENV)
