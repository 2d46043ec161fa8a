# Two commands do all the set-up on a fresh machine (Debian, Python >= 3.10):
#   make tour   creates .venv, installs zoo, loads every family's published weights offline and runs them
#               on the sample inputs shipped in their weights folders (no data set needed)
#   make test   creates .venv, installs zoo with every extra and its dev tools, installs the Debian data
#               packages the tests read (when root), runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check --no-warn-script-location
ZOO_DATA ?= $(abspath ../shared/data)
export ZOO_DATA

# torch and torchvision are pinned together (the CPU/CUDA wheels this project is tested with)
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# Real data the tests read: Fashion-MNIST and the Colin27 MRI templates (Debian packages)
DATA_PACKAGES ?= dataset-fashion-mnist mricron-data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH_PINS)
	$(PIP) -e ".[all,dev]"
	touch $@

.PHONY: venv data-packages tour test test-all lint bench browser docs demo
venv: $(VENV)/.installed

# Installs the Debian data packages when they are missing and this is root with apt-get; otherwise says in
# one line what to install and stops.
data-packages:
	@missing=$$(for p in $(DATA_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q "install ok installed" || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make: installing Debian data packages: $$(echo $$missing)"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq || true; \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "make test needs the Debian data packages: sudo apt-get install $$(echo $$missing)"; exit 1; \
	fi

tour: venv
	$(PY) -m zoo tour --out out/tour

test: venv data-packages browser
	$(PY) -m pytest -q -n 2 --durations=15

test-all: venv data-packages browser
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
