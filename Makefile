# Two entry points for a fresh machine (see README):
#   make demo   install, build the offline model, run notebooks/02_train.ipynb on params/demo.yaml, render the report
#   make test   install with test extras and run the test suite
PYTHON ?= python3
PARAMS ?= params/demo.yaml

.PHONY: install demo test

# torch first, pinned: where the CPU build 2.13.0 lies on disk pip takes it, and the project's
# range (torch>=2.2) is then already satisfied, so pip never pulls the registry's CUDA build.
install:
	$(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[test]"

demo: install
	$(PYTHON) -m frkit prepare-model
	$(PYTHON) -m frkit notebook notebooks/02_train.ipynb -f $(PARAMS)

test: install
	$(PYTHON) -m pytest -q
