# Set-up and the main commands. `make train` and `make test` install everything they need
# into .venv first (torch is pinned to the CPU build that this machine has on disk).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install train test lint bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(VENV)/bin/rlexp-train $(ARGS)

test: $(STAMP)
	WANDB_MODE=offline $(VENV)/bin/pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the layer contracts in pyproject.toml

bench: $(STAMP)
	$(PY) benchmarks/bench_rollout.py
	$(PY) benchmarks/bench_step.py
	$(PY) benchmarks/bench_metrics.py
