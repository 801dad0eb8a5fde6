# Two entry points for a fresh machine (see README):
#   make demo   install, build the offline model, run notebooks/02_train.ipynb on params/demo.yaml, render the report
#   make test   install with test extras (and Debian's chromium for the browser tests), run ruff and the test suite
PYTHON ?= python3
PARAMS ?= params/demo.yaml

.PHONY: install browser demo lint test

# torch first, pinned: where the CPU build 2.13.0 lies on disk pip takes it, and the project's range (torch>=2.2) is
# then already satisfied, so pip never pulls the registry's CUDA build.
install:
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[test,cluster,tracking,onnx]"

# The browser tests drive the system Chromium (Debian packages chromium, chromium-driver). Installed here where
# this is root with apt; elsewhere the tests skip, saying why.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "chromium could not be installed: the browser tests will be skipped"; \
	else echo "not root or no apt-get: chromium not installed, the browser tests will be skipped"; fi

demo: install
	$(PYTHON) -m frkit prepare-model
	$(PYTHON) -m frkit notebook notebooks/02_train.ipynb -f $(PARAMS)

# ruff (lint + format check, configured in pyproject.toml) before the tests: a style slip fails in seconds
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: install browser lint
	$(PYTHON) -m pytest -q
