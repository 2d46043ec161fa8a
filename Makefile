# Two commands do all the set-up on a fresh machine (Debian, Python >= 3.10):
#   make tour   creates .venv, installs zoo, loads every family's published weights offline and runs them
#   make test   creates .venv, installs zoo with its dev extras, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ZOO_DATA ?= $(abspath ../shared/data)
export ZOO_DATA

# torch and torchvision are pinned together (the CPU/CUDA wheels this project is tested with)
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

.PHONY: venv tour test test-all lint bench
venv: $(VENV)/.installed

tour: venv
	$(PY) -m zoo tour --out out/tour

test: venv
	$(PY) -m pytest -q -n 2 --durations=15

test-all: venv
	$(PY) -m pytest -q -n 2 -m "slow or not slow"

lint: venv
	$(VENV)/bin/ruff check zoo tests

bench: venv
	$(PY) tests/benchmarks/bench_core.py
