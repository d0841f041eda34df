# prunescope: the two commands of the README are `make quick` and `make test`.
# Both create .venv, install everything from the pinned constraints (torch pinned to the 2.13.0
# CPU wheel on machines without an NVIDIA GPU; with a GPU the venv sees the system's torch),
# fetch the data they need, and run.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
PYTEST_ARGS ?=
# the torch of CPU machines; constraints.txt pins everything else (it has no torch line, so a GPU
# machine's system torch is never replaced: docs/install.md)
TORCH       := torch==2.13.0
CONSTRAINTS := constraints.txt
# where pip finds the CPU torch wheel (pip.conf's find-links here); `make constraints` reads it too
TORCH_WHEELS ?= /opt/wheels
# the throw-away venv of the bare-install check (`make bare-install`)
BARE   ?= .venv-bare

.PHONY: install quick test test-all browser data-test bare-install constraints bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
ifeq ($(HAS_GPU),1)
	$(PYTHON) -m venv --system-site-packages $(VENV)
else
	$(PYTHON) -m venv $(VENV)
endif
	$(BIN)/python -m pip install --quiet --upgrade pip
ifneq ($(HAS_GPU),1)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) $(TORCH)
endif
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

## The main job: the quick default study (real MNIST, LeNet-5), ending in a report.
quick: $(STAMP)
	$(BIN)/prunescope data fetch mnist
	$(BIN)/prunescope run studies/quick.toml
	$(BIN)/prunescope report studies/quick.toml

## The test suite (fast tests; slow and GPU tests are marked and skipped here).
test: $(STAMP) browser data-test bare-install
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

## What `pip install prunescope` gives a new user: a fresh venv, the pinned torch (the system's
## with a GPU), `pip install .` without extras and without the constraints (what the registry
## serves today), then the command line must start and run a real command.
bare-install:
	rm -rf $(BARE)
ifeq ($(HAS_GPU),1)
	$(PYTHON) -m venv --system-site-packages $(BARE)
else
	$(PYTHON) -m venv $(BARE)
	$(BARE)/bin/python -m pip install --quiet $(TORCH)
endif
	$(BARE)/bin/python -m pip install --quiet .
	@$(BARE)/bin/prunescope --help >/dev/null \
	  || { echo "bare install: 'prunescope --help' failed (an undeclared dependency?)" >&2; exit 1; }
	@$(BARE)/bin/prunescope plan studies/quick.toml >/dev/null \
	  || { echo "bare install: 'prunescope plan studies/quick.toml' failed" >&2; exit 1; }
	@$(BARE)/bin/prunescope data list >/dev/null \
	  || { echo "bare install: 'prunescope data list' failed" >&2; exit 1; }
	@echo "bare install: prunescope --help, plan and data list ran without extras"
	rm -rf $(BARE)

## Pin every package of the resolved environment (core + [dev] + [ray] + [parquet], torch 2.13.0
## CPU) into constraints.txt, for this Python (3.11, Linux x86_64); run after changing pyproject.
constraints:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	echo "$(TORCH)" | $(BIN)/uv pip compile --quiet pyproject.toml - --extra dev --extra ray \
	  --extra parquet --find-links $(TORCH_WHEELS) --python-version 3.11 --no-emit-package torch \
	  --custom-compile-command "make constraints" -o $(CONSTRAINTS)
	@if grep -q '^nvidia-' $(CONSTRAINTS); then echo "$(CONSTRAINTS) pins CUDA libraries: the \
	  CPU torch wheel was not found in TORCH_WHEELS=$(TORCH_WHEELS); point it at the folder holding \
	  $(TORCH)+cpu and run make constraints again" >&2; exit 1; fi

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) $(BARE) runs .pytest_cache
