# The study as a DAG of files: raw data -> processed splits -> runs -> summary -> figures -> paper.
# Every stage writes its outputs atomically and its marker last, so an interrupted target is redone
# by running it again and a finished one is skipped. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDEXPANSION:
MAKEFLAGS += --no-builtin-rules --no-print-directory

# --- what to run (override any of these: make exp-lora-10k PROFILE=demo SET="train.epochs=1") ---
PROFILE ?= paper#           paper (Qwen2.5-3B-Instruct, real data) or demo (tiny model, generated data, CPU)
# The grid comes from experiments/grid.yaml (tests/test_config.py checks this reading of it).
grid_list = $(shell sed -n 's/^$(1): *\[\(.*\)\].*/\1/p' experiments/grid.yaml | tr -d ,)
METHODS ?= $(call grid_list,methods)
SEEDS ?= $(call grid_list,seeds)
SIZES ?= $(shell sed -n 's/^  $(PROFILE): *\[\(.*\)\].*/\1/p' experiments/grid.yaml | tr -d ,)
DEFAULT_SEED = $(firstword $(call grid_list,seeds))
VARIANT ?=#                 experiments/variants/<name>.yaml, e.g. seed-study
SET ?=#                     config overrides, section.key=value separated by spaces
SOURCE ?=#                  a local data file instead of the profile's source
TEST_SIZE ?=
DEV_SIZE ?=
SEED ?=#                    the data seed (splits and the train shuffle)

# --- where things go ----------------------------------------------------------------------------
DATA_DIR ?= data
RAW_DIR = $(DATA_DIR)/raw
PROCESSED = $(DATA_DIR)/processed/$(PROFILE)

# --- the environment ----------------------------------------------------------------------------
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
CLI = $(PY) -m lib
SETUP = $(VENV)/.installed
TORCH_VERSION := $(shell sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml)
TORCH_INDEX ?=#             e.g. https://download.pytorch.org/whl/cpu for a CPU-only machine elsewhere

OVERRIDES = $(SET) \
	$(if $(SOURCE),data.source=$(SOURCE)) \
	$(if $(TEST_SIZE),data.test_size=$(TEST_SIZE)) \
	$(if $(DEV_SIZE),data.dev_size=$(DEV_SIZE)) \
	$(if $(SEED),data.seed=$(SEED))
CONFIG_ARGS = --profile $(PROFILE) $(foreach v,$(VARIANT),--variant $(v)) $(foreach o,$(strip $(OVERRIDES)),--set $(o))

.PHONY: help setup test data vars clean-data

help: ## list every target with one line of help (the default goal)
	@echo "usage: make <target> [PROFILE=paper|demo] [VARIABLE=value ...]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%.-]+:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: PROFILE METHODS SIZES SEEDS VARIANT SET SOURCE DATA_DIR TEST_SIZE DEV_SIZE SEED TORCH_INDEX"

vars: ## print the grid and paths this invocation would use
	@echo "PROFILE=$(PROFILE)"; echo "METHODS=$(METHODS)"; echo "SIZES=$(SIZES)"; echo "SEEDS=$(SEEDS)"
	@echo "PROCESSED=$(PROCESSED)"

# --- set-up -------------------------------------------------------------------------------------
setup: $(SETUP) ## one-time: create .venv with the pinned dependencies (torch first, see TORCH_INDEX)

# torch is installed on its own first: on a machine that has the CPU wheel at hand pip takes it,
# instead of pulling a multi-GB CUDA build as a dependency of the rest; a GPU machine gets CUDA.
$(SETUP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $@

test: $(SETUP) ## run the test suite (offline, CPU)
	$(PY) -m pytest $(PYTEST_ARGS)

# --- data ---------------------------------------------------------------------------------------
data: $(PROCESSED)/manifest.json ## download (or generate, or read SOURCE=), clean and split the data

# One command writes every split; it leaves unchanged files untouched, so a new size does not
# make the runs of the existing sizes out of date.
DATA_ARGS = $(CONFIG_ARGS) --raw-dir $(RAW_DIR) --out $(PROCESSED) --sizes $(SIZES)
$(PROCESSED)/manifest.json: $(SETUP) experiments/base.yaml experiments/profiles/$(PROFILE).yaml \
		$(wildcard $(SOURCE)) $(PROCESSED)/.args
	$(CLI) data $(DATA_ARGS)

# Remembers the data step's arguments, so that other sizes or settings rerun it.
$(PROCESSED)/.args: FORCE
	@mkdir -p $(@D); echo '$(DATA_ARGS)' | cmp -s - $@ || echo '$(DATA_ARGS)' > $@

$(PROCESSED)/%.jsonl: $(PROCESSED)/manifest.json ;

clean-data: ## delete the processed splits of PROFILE (raw downloads are kept)
	rm -rf $(PROCESSED)

.PHONY: FORCE
FORCE:
