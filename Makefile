# bmc-hand: set-up and jobs. Everything runs in a virtual environment in the checkout.
#   make test      create .venv if needed, install the project + test extras, run pytest
#   make bench     print BMC loss / decomposition throughput
#
# TORCH_SPEC pins the CPU build of PyTorch on machines without a GPU (a bare "torch"
# from the registry pulls several GB of CUDA packages). On a GPU machine:
#   make test TORCH_SPEC=torch
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test bench reproduce clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bmclib.bench --json results/benchmarks/bmc_loss.json

reproduce:
	@echo "make reproduce (synthetic data + notebooks through papermill) is not built yet:"
	@echo "it arrives with the notebooks issue. Today: 'make test' and 'make bench'."
	@exit 2

clean-venv:
	rm -rf $(VENV)
