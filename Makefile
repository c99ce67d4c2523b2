# bmc-hand: set-up and jobs. Everything runs in a virtual environment in the checkout.
#   make reproduce  create .venv if needed, install everything, make the synthetic data and run
#                   every notebook through papermill (PRESET=cpu by default; PRESET=gpu on a GPU
#                   machine; FORCE=1 redoes finished steps)
#   make test       create .venv if needed, install the project + all extras, run pytest
#   make test-quick the same without the tests marked slow (a quick loop while editing)
#   make lint       ruff (configured in pyproject.toml); .ci/run runs it after the tests
#   make bench      print BMC loss / decomposition throughput
#
# TORCH_SPEC pins the CPU build of PyTorch on machines without a GPU (a bare "torch"
# from the registry pulls several GB of CUDA packages). On a GPU machine:
#   make test TORCH_SPEC=torch
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PRESET ?= cpu
FORCE ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-quick lint bench reproduce clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[data,fit,dev,notebooks,browser]"
	touch $(STAMP)

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
