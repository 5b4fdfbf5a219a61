# The README's two commands: `make demo` and `make test`. Both create or reuse .venv and install
# what they need; CPU torch is installed first so pip never pulls a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU ?= torch==2.13.0
# Where pip finds no local CPU wheel, point it at PyTorch's CPU wheel index, e.g.
# make test TORCH_PIP_ARGS="--index-url <the PyTorch CPU wheel index>"
TORCH_PIP_ARGS ?=

.PHONY: install demo demo-compare experiment test test-fast test-all lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_CPU)"
	$(PY) -m pip install -q -e ".[dev,sweep]"
	touch $@

demo: install
	$(PY) -m deepcoder.run.demo

demo-compare: install
	$(PY) -m deepcoder.run.demo --losses sad sft

# SAD against SFT on synthetic problems: 4 arms x 3 seeds, ~80 min on 2 idle CPU cores; resumes when rerun.
experiment: install
	$(PY) -m deepcoder.run.experiment

test: install
	$(PY) -m pytest

# The in-process tests only: no root scripts, servers or DDP started as subprocesses (e2e marker).
test-fast: install
	$(PY) -m pytest -m "not slow and not gpu and not e2e"

# ruff (lint + format check) on everything, mypy on src/: what CI runs before the tests.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks experiments *.py
	$(VENV)/bin/ruff format --check src tests benchmarks experiments *.py
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks experiments *.py
	$(VENV)/bin/ruff format src tests benchmarks experiments *.py

test-all: install
	$(PY) -m pytest -m "not gpu"

clean:
	rm -rf outputs/demo .pytest_cache
