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

.PHONY: venv tour test test-all lint bench browser docs demo
venv: $(VENV)/.installed

tour: venv
	$(PY) -m zoo tour --out out/tour

test: venv browser
	$(PY) -m pytest -q -n 2 --durations=15

test-all: venv browser
	$(PY) -m pytest -q -n 2 -m "slow or not slow"

lint: venv
	$(VENV)/bin/ruff check zoo tests

bench: venv
	$(PY) tests/benchmarks/bench_core.py

# tests/test_site.py drives Debian's chromium (apt-get, root or sudo) and needs onnxruntime-web (npm ci)
browser:
	sh docs/_build/install_browser.sh

# the docs site into site/: demo assets (ONNX exports, onnxruntime-web, samples), then a strict mkdocs build
docs: venv
	sh docs/_build/install_browser.sh --npm-only
	$(PY) docs/_build/build.py

# serve site/ on 127.0.0.1 (the demo needs http://, not file://)
DEMO_PORT ?= 8000
demo: docs
	@echo "zoo docs and demo: http://127.0.0.1:$(DEMO_PORT)/  (demo: http://127.0.0.1:$(DEMO_PORT)/demo/index.html)"
	$(PY) -m http.server $(DEMO_PORT) --bind 127.0.0.1 --directory site
