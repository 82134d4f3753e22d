# The study as a DAG of files: raw data -> processed splits -> runs -> summary -> figures -> paper.
# Every stage writes its outputs atomically and its marker last, so an interrupted target is redone
# by running it again and a finished one is skipped. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDEXPANSION:
MAKEFLAGS += --no-builtin-rules --no-print-directory

# --- what to run (override any of these: make exp-lora-10k PROFILE=demo SET="train.epochs=1") ----
PROFILE ?= paper#           paper (Qwen2.5-3B-Instruct, real data, GPU) or demo (tiny model, generated data, CPU)
# The grid comes from experiments/grid.yaml (tests/test_makefile.py checks this reading of it).
grid_list = $(shell sed -n 's/^$(1): *\[\(.*\)\].*/\1/p' experiments/grid.yaml | tr -d ,)
METHODS ?= $(call grid_list,methods)
SEEDS ?= $(call grid_list,seeds)
SIZES ?= $(shell sed -n 's/^  $(PROFILE): *\[\(.*\)\].*/\1/p' experiments/grid.yaml | tr -d ,)
MODEL ?= $(shell sed -n 's/^  name_or_path: *//p' experiments/base.yaml $(wildcard experiments/profiles/$(PROFILE).yaml) | tail -n 1)
# read the files once (a variable set with ?= would run its sed at every use)
METHODS := $(METHODS)
SEEDS := $(SEEDS)
SIZES := $(SIZES)
MODEL := $(MODEL)
DEFAULT_SEED := $(firstword $(call grid_list,seeds))
VARIANT ?=#                 experiments/variants/<name>.yaml, e.g. seed-study
SET ?=#                     config overrides, section.key=value separated by spaces
SOURCE ?=#                  a local QA file instead of the profile's data source
COLUMNS ?=#                 its keys, where they are not of a shape it knows: COLUMNS="question=患者 answer=医生"
# (only from the command line: COLUMNS in the environment is the terminal's width)
DATA_COLUMNS = $(if $(call given,COLUMNS),$(COLUMNS))
MCQ_SOURCE ?=#              a local multiple-choice file for the knowledge track
MCQ_COLUMNS ?=#             its keys, likewise: MCQ_COLUMNS="question=题目 options=选项 answer=答案"
TEST_SIZE ?=
DEV_SIZE ?=
SEED ?=#                    the data seed (splits and the train shuffle); SEEDS are training seeds
REDO ?=#                    REDO=1: bring the runs the goals name up to date (make exp-lora-10k REDO=1)
MODEL_SOURCE ?= huggingface# or modelscope (make model)
EXP ?=#                     the run to chat with, export, push or serve (make chat EXP=lora-10k, or EXP=base)
HOST ?= 127.0.0.1#          where make review and make serve listen (0.0.0.0: every interface of this machine)
PORT ?= 8765#               their port
NAME ?=#                    the rater to invite (make review-invite NAME=alice)
REPO ?=#                    make push: the Hub repository, <user>/<name>
MERGED ?=#                  make push MERGED=1: push the merged model of make export instead of the adapter

# --- how to launch training: python (one process), accelerate or torchrun (several GPUs / nodes) -
LAUNCH ?= python
ACCELERATE_CONFIG ?= multi-gpu#  experiments/accelerate/<name>.yaml
NPROC ?= $(or $(shell nvidia-smi -L 2>/dev/null | wc -l | sed 's/^0$$//'),1)
LAUNCH_ARGS ?=#             extra launcher arguments, e.g. --machine_rank 1 --main_process_ip 10.0.0.1
LAUNCHER_python = $(PY)
LAUNCHER_accelerate = $(VENV)/bin/accelerate launch --config_file experiments/accelerate/$(ACCELERATE_CONFIG).yaml \
	--num_processes $(NPROC) $(LAUNCH_ARGS)
LAUNCHER_torchrun = $(VENV)/bin/torchrun --nproc_per_node $(NPROC) $(LAUNCH_ARGS)
LAUNCHER = $(LAUNCHER_$(LAUNCH))

# --- one run per GPU at a time: make -j4 all-experiments GPUS="0 1 2 3" --------------------------
# Each concurrent training or evaluation takes its own ids from this pool (python -m lib on-free-gpu,
# lib/gpus.py), waiting for free ones; a launcher of NPROC processes takes NPROC ids. By default the
# ids CUDA_VISIBLE_DEVICES names, else every GPU nvidia-smi lists (none on a CPU: nothing is
# wrapped). Read at each use, so that commands that train nothing never start nvidia-smi.
GPUS ?= $(if $(filter environment%,$(origin CUDA_VISIBLE_DEVICES)),$(subst $(comma), ,$(CUDA_VISIBLE_DEVICES)),$\
	$(shell nvidia-smi -L 2>/dev/null | sed -n 's/^GPU \([0-9]*\):.*/\1/p'))
GPU_LOCKS ?= /tmp/medqa-scaling-gpus#  one lock file per id, shared by every job of this machine
on_free_gpus = $(if $(strip $(GPUS)),$(CLI) on-free-gpu --gpus $(GPUS) --count $(1) --locks $(GPU_LOCKS) --)
GPUS_PER_TRAINING = $(if $(filter python,$(LAUNCH)),1,$(NPROC))

# --- where things go ----------------------------------------------------------------------------
DATA_DIR ?= data
RAW_DIR = $(DATA_DIR)/raw
PROCESSED = $(DATA_DIR)/processed/$(PROFILE)
RESULTS_DIR ?= results
RESULTS = $(RESULTS_DIR)/$(PROFILE)
RUNS = $(RESULTS)/runs
BENCH = $(RESULTS_DIR)/bench
GENERATED_DIR ?= paper/generated
BUILD_DIR ?= paper/build
GENERATED = $(GENERATED_DIR)/$(PROFILE)
REVIEW = $(RESULTS)/review
REVIEW_DB = $(REVIEW)/votes.sqlite
# The review's analysis is an input of the figures and the report once someone has started a review.
PREFERENCE = $(if $(wildcard $(REVIEW_DB)),$(REVIEW)/preference.json)
EXPORT = $(RESULTS)/export
PDF = $(BUILD_DIR)/$(PROFILE)/report.pdf
# A hub id is kept in models/<org>--<name>; a path (the demo's models/tiny-qwen2) is itself.
MODEL_DIR = $(if $(filter models/% /% ./% ../%,$(MODEL)),$(MODEL),models/$(subst /,--,$(MODEL)))

# --- the environment ----------------------------------------------------------------------------
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
CLI = $(PY) -m lib
SETUP = $(VENV)/.installed
TORCH_VERSION := $(shell sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml)
TORCH_INDEX ?=#             e.g. https://download.pytorch.org/whl/cpu for a CPU-only machine elsewhere
UV_VERSION = 0.13.9#        the installer of everything but torch (make setup)
WHEELHOUSE ?=#              make setup WHEELHOUSE=<dir>: install from a folder of make wheelhouse, no index
COMPILE_BYTECODE ?= 1#      make setup compiles every module once (empty: not, for the tests' throwaway venvs)
WHEELHOUSE_DIR ?= wheelhouse#  make wheelhouse: the folder it fills
SLIM ?=#                    make wheelhouse SLIM=1: leave out torch and its GPU libraries (a GPU image has them)
WHEEL_PYTHON ?= 3.12#       make wheelhouse: the Python ...
WHEEL_PLATFORM ?= manylinux_2_28_x86_64#  ... and platform of the machine the wheels are for (the GPU images')
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

OVERRIDES = model.name_or_path=$(MODEL) $(SET) \
	$(if $(SOURCE),data.source=$(SOURCE)) \
	$(if $(DATA_COLUMNS),data.columns=$(subst $(space),$(comma),$(strip $(DATA_COLUMNS)))) \
	$(if $(MCQ_SOURCE),eval.mcq_source=$(MCQ_SOURCE)) \
	$(if $(MCQ_COLUMNS),eval.mcq_columns=$(subst $(space),$(comma),$(strip $(MCQ_COLUMNS)))) \
	$(if $(TEST_SIZE),data.test_size=$(TEST_SIZE)) \
	$(if $(DEV_SIZE),data.dev_size=$(DEV_SIZE)) \
	$(if $(SEED),data.seed=$(SEED))
CONFIG_ARGS = --profile $(PROFILE) $(foreach v,$(VARIANT),--variant $(v)) $(foreach o,$(strip $(OVERRIDES)),--set $(o))

# --- the variables a user types, checked before anything runs --------------------------------------
# python -m lib check-variables (lib/make_variables.py) gets every variable given on the command line
# or in the environment, and the goals, while make reads this file: so every target, make -n too,
# passes through it. It names the first one that is wrong in one line, and make stops there.
comma := ,
space := $(subst ,, )
shell_quote = '$(subst ','\'',$(1))'
given = $(filter command $(if $(filter COLUMNS,$(1)),,environment),$(firstword $(origin $(1))))
USER_VARIABLES = PROFILE METHODS SIZES SEEDS SEED TEST_SIZE DEV_SIZE VARIANT SET COLUMNS MCQ_COLUMNS MODEL SOURCE MCQ_SOURCE \
	MODEL_SOURCE EXP LAUNCH ACCELERATE_CONFIG NPROC GPUS HOST PORT NAME REPO MERGED REDO DATA_DIR RESULTS_DIR \
	GENERATED_DIR BUILD_DIR GPU_LOCKS VENV PYTHON TORCH_INDEX PARTITION GRES TIME
define newline


endef
SEVERAL_LINES := $(strip $(foreach v,$(USER_VARIABLES),$(if $(call given,$(v)),$(if $(findstring $(newline),$($(v))),$(v)))))
$(if $(SEVERAL_LINES),$(error $(firstword $(SEVERAL_LINES)): a value on several lines cannot pass through make's commands))
GIVEN_VARIABLES := $(foreach v,$(USER_VARIABLES),$(if $(call given,$(v)),$(call shell_quote,$(v)=$($(v)))))
VARIABLE_PROBLEM := $(if $(strip $(GIVEN_VARIABLES) $(filter exp-% train-% eval-%,$(MAKECMDGOALS))),$\
	$(shell $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(PYTHON)) -m lib check-variables \
		--goals $(foreach g,$(MAKECMDGOALS),$(call shell_quote,$(g))) -- $(GIVEN_VARIABLES) 2>&1))
$(if $(VARIABLE_PROBLEM),$(error $(VARIABLE_PROBLEM)))

# A run is <method>-<size>[-s<seed>]: lora-10k, qlora-60k-s7 (no suffix for the default seed).
run_name = $(1)-$(2)$(if $(filter $(3),$(DEFAULT_SEED)),,-s$(3))
RUN_NAMES = $(foreach m,$(METHODS),$(foreach s,$(SIZES),$(foreach seed,$(SEEDS),$(call run_name,$(m),$(s),$(seed)))))
method_of = $(word 1,$(subst -, ,$(1)))
size_of = $(word 2,$(subst -, ,$(1)))
seed_of = $(patsubst s%,%,$(or $(word 3,$(subst -, ,$(1))),s$(DEFAULT_SEED)))

# $(call remember,FILE,TEXT): FILE holds TEXT, rewritten only when TEXT changes, so that a rule
# depending on FILE reruns exactly when its settings change.
define remember
ifneq ($$(file < $(1)),$(strip $(2)))
$(1): FORCE
endif
$(1):
	@mkdir -p $$(@D); echo '$(strip $(2))' > $$@
endef

.PHONY: help vars setup setup-tex setup-slurm setup-browser wheelhouse setup-wheelhouses review review-invite review-export review-judge tex test test-fast \
	lint data model tiny-model all-experiments summary figures report paper demo chat export push serve submit bench \
	bench-data bench-collation bench-generation bench-demo bench-gpu gpu-check plan \
	clean-data clean-runs

help: ## list every target with one line of help (the default goal)
	@echo "usage: make <target> [PROFILE=paper|demo] [VARIABLE=value ...]   (README.md explains each)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%.-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: PROFILE METHODS SIZES SEEDS MODEL VARIANT SET SOURCE COLUMNS MCQ_SOURCE MCQ_COLUMNS DATA_DIR"
	@echo "           TEST_SIZE DEV_SIZE SEED REDO LAUNCH ACCELERATE_CONFIG NPROC LAUNCH_ARGS EXP TORCH_INDEX MODEL_SOURCE"
	@echo "           GPUS GPU_LOCKS (make -jN) PARTITION GRES TIME SBATCH_ARGS (make submit)"
	@echo "           HOST PORT NAME (make review) HOST PORT REPO MERGED (make serve, make push)"
	@echo "           WHEELHOUSE (make setup) WHEELHOUSE_DIR SLIM WHEEL_PYTHON WHEEL_PLATFORM (make wheelhouse)"

vars: ## print the grid, model and paths this invocation would use
	@echo "PROFILE=$(PROFILE)"; echo "METHODS=$(METHODS)"; echo "SIZES=$(SIZES)"; echo "SEEDS=$(SEEDS)"
	@echo "MODEL=$(MODEL)"; echo "MODEL_DIR=$(MODEL_DIR)"; echo "PROCESSED=$(PROCESSED)"; echo "RUNS=$(RUNS)"
	@echo "RUN_NAMES=$(RUN_NAMES)"

# --- set-up -------------------------------------------------------------------------------------
setup: $(SETUP) ## one-time: create .venv with the pinned dependencies (torch first, see TORCH_INDEX)

# torch is installed on its own first, by pip: on a machine that has the CPU wheel at hand pip
# takes it, instead of pulling a multi-GB CUDA build as a dependency of the rest; a GPU machine
# gets CUDA. uv then installs the rest of the pinned list, several times faster than pip, and
# keeps the torch it finds (its pin is met). It also compiles every module to bytecode up front
# (~40 s once): uv leaves that to the first import, which never caches it where
# PYTHONDONTWRITEBYTECODE is set, and then every process of the demo and the tests spends ~9 s
# more on 2 cores compiling transformers, peft and datasets (22 s of imports instead of 13 s).
#
# With WHEELHOUSE=<dir> (a machine without internet) the same comes from that folder of `make
# wheelhouse`, with no index: its requirements.txt is the whole resolved list, hashes checked, so
# nothing else is looked for (--no-deps). A SLIM folder has no torch: the venv then sees the
# machine's own packages (--system-site-packages) and takes torch from them. The folder is checked
# first (finished, intact, for this Python; SLIM: this Python has torch), in one line.
$(SETUP): pyproject.toml
ifeq ($(WHEELHOUSE),)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==$(TORCH_VERSION)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet $(if $(COMPILE_BYTECODE),--compile-bytecode) --python $(PY) -e '.[test]'
else
	options=$$($(PYTHON) -m lib wheelhouse --check $(WHEELHOUSE)) && $(PYTHON) -m venv $$options $(VENV)
	$(VENV)/bin/pip install --quiet --no-index --find-links $(WHEELHOUSE) uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --offline --no-index --find-links $(WHEELHOUSE) --no-deps --require-hashes \
		$(if $(COMPILE_BYTECODE),--compile-bytecode) --python $(PY) -r $(WHEELHOUSE)/requirements.txt
	$(VENV)/bin/uv pip install --quiet --offline --no-index --find-links $(WHEELHOUSE) --no-deps --python $(PY) -e .
endif
	@touch $@

# Every pinned package as wheels for a machine without internet (lib/wheelhouse.py): run where
# there is internet, copy the folder and the repository over, `make setup WHEELHOUSE=wheelhouse`
# there. jieba publishes no wheel: it is built into one here.
wheelhouse: $(SETUP) ## every pinned package as wheels for an offline machine -> wheelhouse/ (SLIM=1: without torch)
	$(if $(filter-out 1,$(SLIM)),$(error SLIM=$(SLIM): say SLIM=1, or leave it out for a bundle with torch))
	$(CLI) wheelhouse --out $(WHEELHOUSE_DIR) --python-version $(WHEEL_PYTHON) \
		--platform $(WHEEL_PLATFORM) $(if $(SLIM),--slim) --also uv==$(UV_VERSION)

# The SLIM bundles the offline-install tests use (tests/test_wheelhouse.py), for this machine's
# Python and platform: at the pins, and at the oldest supported versions (lib/versions.py). They
# need the package index, which tests never reach: CI makes them during its set-up.
TEST_WHEELHOUSES = .wheelhouses
setup-wheelhouses: $(SETUP) ## the SLIM bundles for this machine that the offline-install tests use (PyPI; ~300 MB)
	$(CLI) wheelhouse --out $(TEST_WHEELHOUSES)/pinned --slim --also uv==$(UV_VERSION)
	$(CLI) wheelhouse --out $(TEST_WHEELHOUSES)/oldest --slim --oldest --also uv==$(UV_VERSION)

# The report's TeX and fonts: the Debian/Ubuntu packages of paper/tex-packages.txt, then the check
# that the report's own preamble compiles (it names what is missing in one line).
TEX_PACKAGES = $(shell sed 's/\#.*//' paper/tex-packages.txt | awk 'NF {print $$1}')
setup-tex: ## TeX Live + Chinese fonts for the report and figures (Debian/Ubuntu, apt; ~2 min, 600 MB)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null
	@$(PYTHON) -m lib paper --check

# The review's browser test drives Debian's chromium through its own chromedriver (no browser download).
setup-browser: ## headless Chromium and chromedriver for the review's browser test (Debian/Ubuntu, apt)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null

# Can TeX build the report here? Compiles the report's preamble (paper/probe.tex). Where it cannot,
# TeX is installed where we may (root on Debian/Ubuntu), else one line says what is missing.
tex: ## check that TeX has every package and font the report needs (installs them as root on Debian/Ubuntu)
	@if ! message=$$($(PYTHON) -m lib paper --check 2>&1); then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "$${message#error: }: installing TeX (make setup-tex)" >&2; $(MAKE) setup-tex; \
		else echo "$$message" >&2; exit 1; fi; \
	else echo "$$message"; fi

test: $(SETUP) ## run the whole test suite (offline, CPU; what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(SETUP) ## check the code's style, imports and common bugs with ruff (pyproject.toml; CI runs it)
	$(VENV)/bin/ruff check lib tests

test-fast: $(SETUP) ## the tests without the slow end-to-end ones (training, evaluation, make demo), for development
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# --- data ---------------------------------------------------------------------------------------
data: $(PROCESSED)/manifest.json $(PROCESSED)/mcq_report.json ## get, clean and split the data (SOURCE=file for your own) + the MCQ set

# The goals that make data or runs: the others (summary, figures, report, paper, ...) read the data and
# the runs as they are and make only what is missing, so that a setting given to them (SEED=7) never
# rebuilds the data nor trains a run (see "Finished work is kept" below).
PRODUCING = $(filter data exp-% train-% eval-% all-experiments submit $(RUNS)/%,$(MAKECMDGOALS))

# One command writes every split; it leaves unchanged files untouched, so a new size does not
# make the runs of the existing sizes out of date.
DATA_RECIPES = $(if $(PRODUCING),$(SETUP) experiments/base.yaml experiments/profiles/$(PROFILE).yaml $(PROCESSED)/.args)
$(PROCESSED)/manifest.json: $(DATA_RECIPES) $(if $(PRODUCING),$(wildcard $(SOURCE)))
	$(CLI) data $(CONFIG_ARGS) --raw-dir $(RAW_DIR) --out $(PROCESSED) --sizes $(SIZES)

# The items file keeps its time when its content does not change (evaluations are not redone for
# nothing): the report, written every time, is this step's target.
$(PROCESSED)/mcq_report.json: $(DATA_RECIPES) $(if $(PRODUCING),$(wildcard $(MCQ_SOURCE)))
	$(CLI) mcq-data $(CONFIG_ARGS) --out $(@D)/mcq.jsonl

# The settings the data depends on (sizes, variants, data.* / cleaning.* / eval.mcq_* overrides),
# remembered so that changing them reruns the data step and nothing else does. Decided when make
# reads this file, so that make -n shows the true plan.
DATA_SETTINGS = --sizes $(SIZES) $(VARIANT) $(filter data.% cleaning.% eval.mcq_%,$(OVERRIDES))
$(eval $(call remember,$(PROCESSED)/.args,$(DATA_SETTINGS)))

# A split is made by the data step, and rewritten only when its content changes: make re-reads its
# time after that step, so runs retrain exactly when their data changed. The same for the items.
$(PROCESSED)/mcq.jsonl: | $(PROCESSED)/mcq_report.json ;
$(PROCESSED)/%.jsonl: | $(PROCESSED)/manifest.json ;

# Files that only pattern rules name (a split, a run's train.done) are intermediate to make:
# keep them after the make that needed them.
.PRECIOUS: $(PROCESSED)/%.jsonl $(RUNS)/%/train.done

# --- the base model -----------------------------------------------------------------------------
model: $(MODEL_DIR)/.ready ## fetch the base model into models/ and check it loads (demo: build the tiny one)
tiny-model: models/tiny-qwen2/.ready ## build the demo's tiny Qwen2 and its tokenizer, and pretrain it (~2 min, once)

# (for models/tiny-qwen2 the shorter stem makes this rule win over the hub rule below)
%/tiny-qwen2/.ready: $(SETUP) lib/tiny_model.py lib/data/synthetic.py
	$(CLI) tiny-model --out $(@D)

models/%/.ready: $(SETUP)
	$(CLI) model $(CONFIG_ARGS) --source $(MODEL_SOURCE) --out $(@D)

# --- training and evaluation: one pattern over the grid ------------------------------------------
exp-%: $(RUNS)/%/eval.json ## train, then evaluate one run: make exp-qlora-60k (exp-lora-10k-s7: seed 7)
	@echo "$(RUNS)/$*: done"
train-%: $(RUNS)/%/train.done ## train one run only
	@true
eval-%: $(RUNS)/%/eval.json ## evaluate one run only; make eval-base evaluates the untuned model, eval-base-nf4 it in NF4
	@true

# The untuned rows: base (unquantised), and base-nf4 (the base quantised as QLoRA loads it, QLoRA's
# 0-data row) wherever qlora is in the grid.
UNTUNED = base $(if $(filter qlora,$(METHODS)),base-nf4)
all-experiments: $(RUN_NAMES:%=$(RUNS)/%/eval.json) $(UNTUNED:%=$(RUNS)/%/eval.json) ## the grid METHODS x SIZES x SEEDS, plus the base model (and base-nf4 for qlora)
	@echo "all-experiments: $(words $(RUN_NAMES)) runs and $(UNTUNED) are evaluated in $(RUNS)"

# Finished work is kept. A run's training is finished once train.done and its adapter's files exist,
# its evaluation once eval.json exists beside a finished training (lib/runs.py); make never trains or
# evaluates such a run again because its data, its base model or a setting changed since. Each run
# records the sha256 of the data it was trained and evaluated on, and the summary names the runs
# whose data has changed (stale). REDO=1 brings the runs the goals name up to date (make exp-lora-10k
# REDO=1; all-experiments REDO=1: the whole grid): their training and evaluation run again, and redo
# what their recorded inputs say is out of date (python -m lib train / evaluate compare them with
# today's), nothing else. A run whose adapter is gone is trained again, its evaluation redone.
goal_runs = $(patsubst $(1)-%,%,$(filter $(1)-%,$(MAKECMDGOALS)))
GRID_GOAL = $(if $(filter all-experiments,$(MAKECMDGOALS)),$(RUN_NAMES) $(UNTUNED))
REDONE_TRAININGS := $(if $(REDO),$(call goal_runs,train) $(call goal_runs,exp) $(GRID_GOAL))
REDONE_EVALUATIONS := $(if $(REDO),$(call goal_runs,eval) $(call goal_runs,exp) $(GRID_GOAL))
runs_with = $(patsubst $(RUNS)/%/$(1),%,$(wildcard $(RUNS)/*/$(1)))
TRAINED := $(filter $(call runs_with,adapter/adapter_config.json),$\
	$(filter $(call runs_with,adapter/adapter_model.safetensors),$(call runs_with,train.done)))
# Goals that make no runs keep every run file there is.
KEPT_TRAININGS := $(filter-out $(REDONE_TRAININGS),$(if $(PRODUCING),$(TRAINED),$(call runs_with,train.done)))
KEPT_EVALUATIONS := $(filter-out $(REDONE_EVALUATIONS),$\
	$(filter $(if $(PRODUCING),base base-nf4 $(TRAINED),%),$(call runs_with,eval.json)))
# $(call unless_kept,KEPT,RUN,PREREQUISITES): the prerequisites of a run's file, and FORCE (its command
# decides what is left to do), unless the file is kept: then none
unless_kept = $(if $(filter $(2),$($(1))),,$(3) FORCE)

TRAIN_ARGS = $(CONFIG_ARGS) --method $(call method_of,$*) --size $(call size_of,$*) --seed $(call seed_of,$*) \
	--data $(PROCESSED) --out $(RUNS)/$*
$(RUNS)/%/train.done: $$(call unless_kept,KEPT_TRAININGS,$$*,$$(PROCESSED)/train-$$(call size_of,$$*).jsonl \
		$(PROCESSED)/dev.jsonl $(MODEL_DIR)/.ready)
	$(if $(filter-out python,$(LAUNCH)),$(CLI) train $(TRAIN_ARGS) --check-layout $(NPROC))
	$(call on_free_gpus,$(GPUS_PER_TRAINING)) $(LAUNCHER) -m lib train $(TRAIN_ARGS)

# A kept evaluation is still redone after its run trains again (its train.done is then newer).
$(RUNS)/%/eval.json: $$(if $$(PRODUCING),$(RUNS)/$$*/train.done) \
		$$(call unless_kept,KEPT_EVALUATIONS,$$*,$(PROCESSED)/test.jsonl $(PROCESSED)/mcq.jsonl)
	$(call on_free_gpus,1) $(CLI) evaluate $(CONFIG_ARGS) --method $(call method_of,$*) --run-dir $(@D) --data $(PROCESSED)

UNTUNED_INPUTS = $(MODEL_DIR)/.ready $(PROCESSED)/test.jsonl $(PROCESSED)/mcq.jsonl
$(RUNS)/base/eval.json: $$(call unless_kept,KEPT_EVALUATIONS,base,$(UNTUNED_INPUTS))
	$(call on_free_gpus,1) $(CLI) evaluate $(CONFIG_ARGS) --run-dir $(@D) --data $(PROCESSED)

# qlora's configuration without an adapter: the base model loaded in NF4, as QLoRA trains on it
$(RUNS)/base-nf4/eval.json: $$(call unless_kept,KEPT_EVALUATIONS,base-nf4,$(UNTUNED_INPUTS))
	$(CLI) evaluate $(CONFIG_ARGS) --method qlora --run-dir $(@D) --data $(PROCESSED)

chat: $(SETUP) ## talk to a run in the terminal: make chat EXP=lora-10k (EXP=base: the untuned model; base-nf4: in NF4)
	@test -n "$(EXP)" || { echo "error: say which run: make chat EXP=<method>-<size> (or EXP=base)" >&2; exit 2; }
	$(CLI) chat $(CONFIG_ARGS) $(if $(filter base,$(EXP)),,--method $(if $(filter base-nf4,$(EXP)),qlora,$(call method_of,$(EXP)))) \
		--run-dir $(RUNS)/$(EXP)

# --- using a trained run: a merged model with its card, the Hub, an OpenAI-compatible API ------
need_exp = @test -n "$(EXP)" || { echo "error: say which run: make $@ EXP=<method>-<size>$(1)" >&2; exit 2; }
METHOD_ARG = $(if $(filter base,$(EXP)),,--method $(call method_of,$(EXP)))

# The commands check the run themselves (an unknown or unfinished run is one line saying what to
# do), rather than make training it as a prerequisite.
export: $(SETUP) ## merge a run's adapter into the 16-bit base + model card: make export EXP=lora-10k -> results/<profile>/export/<run>
	$(call need_exp)
	$(CLI) export $(CONFIG_ARGS) $(METHOD_ARG) --run-dir $(RUNS)/$(EXP) --data $(PROCESSED) --out $(EXPORT)/$(EXP)

push: $(SETUP) ## upload a run's adapter to the Hugging Face Hub (HF_TOKEN): make push EXP=lora-10k REPO=user/name (MERGED=1: the merged model)
	$(call need_exp)
	@test -n "$(REPO)" || { echo "error: say where to: make push EXP=$(EXP) REPO=<user>/<name>" >&2; exit 2; }
	$(CLI) push --run-dir $(RUNS)/$(EXP) --data $(PROCESSED) --repo $(REPO) $(if $(MERGED),--export-dir $(EXPORT)/$(EXP))

serve: $(SETUP) ## an OpenAI-compatible API on HOST:PORT: make serve EXP=lora-10k (EXP=base; vLLM on a GPU, else transformers serve)
	$(call need_exp, (or EXP=base))
	$(CLI) serve $(CONFIG_ARGS) $(METHOD_ARG) --run-dir $(RUNS)/$(EXP) --data $(PROCESSED) --export-dir $(EXPORT)/$(EXP) \
		--host $(HOST) --port $(PORT)

# --- from runs to the report --------------------------------------------------------------------
# The summary reads whatever runs exist: missing ones are rows with a status, not an error.
summary: $(RESULTS)/summary.csv ## one table of every run and the base model, and the scaling fits
figures: $(GENERATED)/figures/figures.json ## the figures: PNG in results/<profile>/figures, PDF for the paper
report: $(GENERATED)/report.done ## the report's generated LaTeX: tables and every quoted number as a macro
paper: $(PDF) ## build the LaTeX report -> paper/build/<profile>/report.pdf (needs TeX: make setup-tex)
	@echo "$(PDF)"

# The grid asked for and the runs present: a deleted run or another grid redoes the summary.
GRID_ARGS = --methods $(METHODS) --sizes $(SIZES) --seeds $(SEEDS)
$(eval $(call remember,$(RESULTS)/.summary-args,$(GRID_ARGS) $(notdir $(wildcard $(RUNS)/*)) trained: $(TRAINED)))

# The data is an input too: the summary names the runs whose data has changed since (stale).
$(RESULTS)/summary.csv: $(SETUP) $(RESULTS)/.summary-args $(wildcard $(RUNS)/*/eval.json $(RUNS)/*/train.done) \
		$(wildcard $(PROCESSED)/manifest.json $(PROCESSED)/mcq.jsonl)
	$(CLI) summarize $(CONFIG_ARGS) --runs $(RUNS) --data $(PROCESSED) --out $(RESULTS) $(GRID_ARGS)

# The figures' Chinese labels need the report's font: TeX and its fonts are checked (and installed
# where we may) first; without them the figures are drawn with English labels, and `make paper`
# says what is missing.
$(GENERATED)/figures/figures.json: $(RESULTS)/summary.csv $(PREFERENCE)
	@$(MAKE) tex >/dev/null 2>&1 || true
	$(CLI) figures --summary $(RESULTS) --runs $(RUNS) --png $(RESULTS)/figures --pdf $(GENERATED)/figures

$(GENERATED)/report.done: $(RESULTS)/summary.csv $(GENERATED)/figures/figures.json $(PROCESSED)/manifest.json $(PREFERENCE)
	$(CLI) report --results $(RESULTS) --runs $(RUNS) --data $(PROCESSED) --profile $(PROFILE) $(GRID_ARGS) \
		--out $(GENERATED)

# the `paper` target prints the PDF's path, also when it was already built; TeX is checked (and
# installed where we may) only when there is a PDF to build
$(PDF): $(GENERATED)/report.done paper/report.tex paper/preamble.tex paper/references.bib
	@$(MAKE) tex >/dev/null
	$(CLI) paper --profile $(PROFILE) --generated $(GENERATED) --out $(@D) >/dev/null

# TeX and its fonts are installed (where missing, and where we may) while the experiments run,
# and ready before the figures, whose labels need the fonts.
demo: ## the whole study offline on the CPU (demo profile) -> paper/build/demo/report.pdf
	@$(MAKE) tex >/dev/null 2>&1 & tex=$$!; $(MAKE) PROFILE=demo all-experiments; wait $$tex || true
	$(MAKE) PROFILE=demo paper

# --- blind review of the answers --------------------------------------------------------------------
review: $(SETUP) ## blind side-by-side rating of the runs' answers in the browser (HOST=, PORT=); Ctrl-C stops it
	$(CLI) review serve --runs $(RUNS) --db $(REVIEW_DB) --host $(HOST) --port $(PORT)

# The link points where the running review server listens (it records that beside its database);
# HOST= or PORT= given here overrides it.
review-invite: $(SETUP) ## print a rater's personal link: make review-invite NAME=alice (again: a new link)
	@test -n "$(NAME)" || { echo "error: say who: make review-invite NAME=<name>" >&2; exit 2; }
	@$(CLI) review invite --db $(REVIEW_DB) --name $(call shell_quote,$(NAME)) $(if $(filter-out file,$(origin HOST)),--host $(HOST)) \
		$(if $(filter-out file,$(origin PORT)),--port $(PORT))

review-export: $(SETUP) ## every vote so far -> results/<profile>/review/votes.csv
	$(CLI) review export --db $(REVIEW_DB) --out $(REVIEW)/votes.csv

review-judge: $(SETUP) ## the LLM judge (MEDQA_JUDGE_* settings) votes in both orders, kept apart as judge:<model>
	$(CLI) review judge --runs $(RUNS) --db $(REVIEW_DB)

# Bradley-Terry strengths, win rates, agreement: redone when the votes change, which shows in the
# database's -wal file while the server runs, and in the database itself once it stops.
$(REVIEW)/preference.json: $(SETUP) $(wildcard $(REVIEW_DB) $(REVIEW_DB)-wal)
	$(CLI) review analyse --db $(REVIEW_DB) --out $@

# --- the grid on a Slurm cluster: make submit ------------------------------------------------------
# One array task per unfinished run (make exp-<run>) and a job after the array for the report,
# submitted by python -m lib submit (lib/slurm.py) with experiments/slurm/array.sbatch and
# report.sbatch. The data and the model are prepared here first: login nodes reach the network,
# compute nodes often do not, and the tasks must not all prepare the data at once.
PARTITION ?=#               sbatch --partition of every job
GRES ?=#                    sbatch --gres of each run, e.g. gpu:1
TIME ?=#                    sbatch --time of every job, e.g. 12:00:00
SBATCH_ARGS ?=#             more sbatch options for every job, e.g. --account=abc --qos=normal
# The variables that reach every job's make: those given to make submit (on its command line or
# in the environment); the others keep their defaults, worked out on the node (NPROC counts its GPUs).
JOB_VARIABLES = PROFILE METHODS SIZES SEEDS MODEL VARIANT SET SOURCE COLUMNS MCQ_SOURCE MCQ_COLUMNS TEST_SIZE DEV_SIZE \
	SEED DATA_DIR RESULTS_DIR GENERATED_DIR BUILD_DIR LAUNCH ACCELERATE_CONFIG NPROC LAUNCH_ARGS PYTHON VENV

submit: data model ## the unfinished runs as a Slurm job array, then a job for the summary, figures and report
	@unfinished=$$(for run in $(RUN_NAMES) $(UNTUNED); do $(MAKE) -q $(RUNS)/$$run/eval.json || echo $$run; done); \
	report_done=$$($(MAKE) -q $(GENERATED)/report.done && echo --report-done || true); \
	$(CLI) submit --runs $$unfinished $$report_done --out $(RESULTS)/slurm --job-name medqa-$(PROFILE) \
		--partition '$(PARTITION)' --gres '$(GRES)' --time '$(TIME)' --sbatch-args $(call shell_quote,$(SBATCH_ARGS)) \
		$(foreach v,$(JOB_VARIABLES),$(if $(call given,$(v)),--variable $(call shell_quote,$(v)=$($(v)))))

# A real Slurm on one machine, for the test of make submit (tests/test_slurm.py starts its daemons).
setup-slurm: ## Slurm and munge for the submit test (Debian/Ubuntu, apt; ~30 s)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null

# --- benchmarks ---------------------------------------------------------------------------------
bench: bench-data bench-collation bench-generation bench-demo ## the CPU benchmarks side by side -> results/bench/README.md
	$(CLI) bench-summary --dir $(BENCH)

bench-data: $(SETUP) ## data preparation speed on 100k generated records
	$(CLI) bench-data --out $(BENCH)

bench-collation: $(SETUP) models/tiny-qwen2/.ready ## training tokens/s: our collation vs padding every example to 512
	$(CLI) bench-collation --model models/tiny-qwen2 --out $(BENCH)

bench-generation: $(SETUP) models/tiny-qwen2/.ready ## batched vs one-by-one generation, seconds per 1,000 test items
	$(CLI) bench-generation --model models/tiny-qwen2 --out $(BENCH)

bench-demo: $(SETUP) ## time every stage of `make demo` from scratch, in a scratch folder
	$(CLI) bench-demo --out $(BENCH)

bench-gpu: $(SETUP) ## training throughput and memory of the Qwen2.5-3B architecture on this GPU -> results/bench/gpu-<profile>.md
	$(CLI) bench-gpu $(CONFIG_ARGS) $(if $(wildcard $(PROCESSED)),--data $(PROCESSED)) --out $(BENCH)

# No $(SETUP): it also runs with the machine's python3 where that has what training needs; the
# checks that need a missing package are skipped and name it (offline: make setup WHEELHOUSE=).
gpu-check: ## is this GPU machine ready: correctness, speed and the targets (a 6-minute budget) -> results/bench/gpu-check.md
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m lib gpu-check $(CONFIG_ARGS) --out $(BENCH)

plan: $(SETUP) ## estimated GPU memory of each method for the 3B model, and which cells fit a 16 GB T4
	$(CLI) plan $(CONFIG_ARGS) --bench $(BENCH)/gpu-$(PROFILE).json --runs $(RUNS) --out $(BENCH)

# --- cleaning -----------------------------------------------------------------------------------
clean-data: ## delete the processed splits of PROFILE (raw downloads are kept)
	rm -rf $(PROCESSED)

clean-runs: ## delete every run, summary and figure of PROFILE (asks nothing: think first)
	rm -rf $(RESULTS) $(GENERATED) $(BUILD_DIR)/$(PROFILE)

.PHONY: FORCE
FORCE:
