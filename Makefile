# prunescope: the two commands of the README are `make quick` and `make test`.
# Both create .venv, install everything (torch pinned to the 2.13.0 CPU wheel on machines without
# an NVIDIA GPU; with a GPU the venv sees the system's torch), fetch the data they need, and run.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
PYTEST_ARGS ?=

.PHONY: install quick test test-all browser data-test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
ifeq ($(HAS_GPU),1)
	$(PYTHON) -m venv --system-site-packages $(VENV)
else
	$(PYTHON) -m venv $(VENV)
endif
	$(BIN)/python -m pip install --quiet --upgrade pip
ifneq ($(HAS_GPU),1)
	$(BIN)/python -m pip install --quiet torch==2.13.0
endif
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: the quick default study (real MNIST, LeNet-5), ending in a report.
quick: $(STAMP)
	$(BIN)/prunescope data fetch mnist
	$(BIN)/prunescope run studies/quick.toml
	$(BIN)/prunescope report studies/quick.toml

## The test suite (fast tests; slow and GPU tests are marked and skipped here).
test: $(STAMP) browser data-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

## Everything, slow tests included.
test-all: $(STAMP) browser data-test
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

data-test: $(STAMP)
	$(BIN)/prunescope data fetch mnist fashion-mnist cifar10

## Chromium for the report's browser test: installed from Debian's packages where we are root.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "no chromium and not root: the browser test will be skipped"; fi

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
