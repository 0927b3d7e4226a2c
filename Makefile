# vitlearnenc — common tasks. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CIFAR-10: a local copy (tar.gz of train/test class folders, or an extracted folder);
# leave empty to download with torchvision (needs internet).
DATA ?=
# extra Hydra overrides for `make train`, e.g. ARGS="cipher=plain trainer.max_epochs=5"
ARGS ?=
PYTEST_FLAGS ?=
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: help install train test test-slow test-full lint typecheck bench gpu-check clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install the package with dev tools

train: install  ## train a small ViT on CIFAR-10 encrypted with a fresh key (DATA=path for a local copy)
	$(BIN)/vitlearnenc-train experiment=quickstart $(if $(DATA),data=cifar10_folder data.root=$(abspath $(DATA))) $(ARGS)

test: install  ## fast test suite (no slow, no GPU)
	$(BIN)/pytest -m "not slow and not gpu" -q $(PYTEST_FLAGS)

test-slow: install  ## slow tests only (DDP, sweeps, kill/resume, load)
	$(BIN)/pytest -m "slow" -q $(PYTEST_FLAGS)

test-full: install  ## every test (GPU tests run where CUDA exists)
	$(BIN)/pytest -q $(PYTEST_FLAGS)

lint: install  ## ruff lint + format check, mypy on ciphers/ and data/
	$(BIN)/ruff check vitlearnenc tests experiments
	$(BIN)/ruff format --check vitlearnenc tests experiments
	$(BIN)/mypy vitlearnenc/ciphers vitlearnenc/data

bench: install  ## run every benchmark; JSON in experiments/results/bench/ and results/data/
	$(BIN)/python -m experiments.benchmarks.run_all
	$(BIN)/python -m experiments.benchmarks.bench_streaming --sizes 10000,60000 --workers 2 --worlds 1,2
	$(BIN)/python -m experiments.benchmarks.bench_streaming --in-memory --sizes 10000,30000,60000 --workers 2 --worlds 1
	$(BIN)/python -m experiments.benchmarks.bench_streaming --in-memory --sizes 10000 --workers 2 --worlds 2 --tag _ddp
	$(BIN)/python -m experiments.benchmarks.bench_storage
	$(BIN)/python -m experiments.benchmarks.bench_loader_worker

gpu-check: install  ## on a GPU machine (< 5 min): gpu tests + GPU rows of cipher, step, streaming benches
	$(BIN)/pytest -m gpu -q $(PYTEST_FLAGS)
	$(BIN)/python -m experiments.benchmarks.gpu_check

clean:  ## remove caches and run outputs (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache .mypy_cache
