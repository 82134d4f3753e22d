# The study as a DAG of files: raw data -> processed splits -> runs -> summary -> figures -> paper.
# Every stage writes its outputs atomically and its marker last, so an interrupted target is redone
# by running it again and a finished one is skipped. This file is the study, top-down; make/ holds the
# rest: the check of the variables (variables.mk), the launchers (launch.mk), help and cleaning, set-up
# and tests, using a run, the blind review, Slurm, the benchmarks. `make help` lists every target.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDEXPANSION:
MAKEFLAGS += --no-builtin-rules --no-print-directory

# --- what to run (override any of these: make exp-lora-10k PROFILE=demo SET="train.epochs=1") ----
PROFILE ?= paper#           paper (Qwen2.5-3B-Instruct, real data, GPU) or demo (tiny model, generated data, CPU)
# The grid comes from experiments/grid.yaml, a key's list or the profile's under it (tests/test_makefile.py checks).
grid_list = $(shell sed -En '/^$(1):/,/^[a-z]/s/^($(1)|  $(PROFILE)): *\[(.*)\].*/\2/p' experiments/grid.yaml | tr -d ,)
METHODS ?= $(call grid_list,methods)
SEEDS ?= $(call grid_list,seeds)
SIZES ?= $(if $(filter extended,$(GRID)),$(call grid_list,extended)) $(call grid_list,sizes)# GRID=extended: and `extended`
MODEL ?= $(shell sed -n 's/^  name_or_path: *//p' experiments/base.yaml $(wildcard experiments/profiles/$(PROFILE).yaml) | tail -n 1)
METHODS := $(METHODS)# read the files once (a variable set with ?= would run its sed at every use)
SEEDS := $(SEEDS)
SIZES := $(strip $(SIZES))
MODEL := $(MODEL)
DEFAULT_SEED := $(firstword $(call grid_list,seeds))
VARIANT ?=#                 experiments/variants/<name>.yaml, e.g. seed-study
SET ?=#                     config overrides, section.key=value separated by spaces
SOURCE ?=#                  a local QA file instead of the profile's data source
COLUMNS ?=#                 its keys, where they are not of a shape it knows: COLUMNS="question=患者 answer=医生"
# (only from the command line: COLUMNS in the environment is the terminal's width)
DATA_COLUMNS = $(if $(call given,COLUMNS),$(COLUMNS))
MCQ_SOURCE ?=#              a local multiple-choice file for the knowledge track (GENERAL_SOURCE: the general track)
MCQ_COLUMNS ?=#             its keys, likewise: MCQ_COLUMNS="question=题目 options=选项 answer=答案"
TEST_SIZE ?=
DEV_SIZE ?=
SEED ?=#                    the data seed (splits and the train shuffle); SEEDS are training seeds
REDO ?=#                    REDO=1: bring the runs the goals name up to date (make exp-lora-10k REDO=1)
MODEL_SOURCE ?= huggingface# or modelscope (make model)

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
# the review's analysis (make/review.mk): an input of the figures and report once a review started
PREFERENCE = $(if $(wildcard $(REVIEW_DB)),$(REVIEW)/preference.json)
PDF = $(BUILD_DIR)/$(PROFILE)/report.pdf
# A hub id is kept in models/<org>--<name>; a path (the demo's models/tiny-qwen2) is itself.
MODEL_DIR = $(if $(filter models/% /% ./% ../%,$(MODEL)),$(MODEL),models/$(subst /,--,$(MODEL)))

# --- the environment ----------------------------------------------------------------------------
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
CLI = $(PY) -m lib
SETUP = $(VENV)/.installed#  made by make setup (make/setup.mk)

OVERRIDES = model.name_or_path=$(MODEL) $(SET) \
	$(if $(SOURCE),data.source=$(SOURCE)) \
	$(if $(DATA_COLUMNS),data.columns=$(subst $(space),$(comma),$(strip $(DATA_COLUMNS)))) \
	$(if $(MCQ_SOURCE),eval.mcq_source=$(MCQ_SOURCE)) $(if $(GENERAL_SOURCE),eval.general_source=$(GENERAL_SOURCE)) \
	$(if $(MCQ_COLUMNS),eval.mcq_columns=$(subst $(space),$(comma),$(strip $(MCQ_COLUMNS)))) \
	$(if $(TEST_SIZE),data.test_size=$(TEST_SIZE)) \
	$(if $(DEV_SIZE),data.dev_size=$(DEV_SIZE)) \
	$(if $(SEED),data.seed=$(SEED))
CONFIG_ARGS = --profile $(PROFILE) $(foreach v,$(VARIANT),--variant $(v)) $(foreach o,$(strip $(OVERRIDES)),--set $(o))

# Every variable a user typed is checked here, before any work (one line names the first wrong one);
# then the launchers: python, accelerate or torchrun ($(LAUNCHER)), one run per GPU ($(on_free_gpus)).
include make/variables.mk make/launch.mk

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

##@ The study: data -> base model -> runs -> summary -> figures -> report -> paper
.PHONY: data model tiny-model all-experiments summary figures report paper demo

# --- data ---------------------------------------------------------------------------------------
MCQ_REPORTS = $(PROCESSED)/mcq_report.json $(PROCESSED)/general_report.json# the tracks: medical, general ability
data: $(PROCESSED)/manifest.json $(MCQ_REPORTS) ## get, clean and split the data (SOURCE=file for your own) + the MCQ sets

# The goals that make data or runs; the others (summary, figures, report, paper...) read the data and runs
# as they are and make only what is missing: a setting given to them (SEED=7) never rebuilds nor trains.
PRODUCING = $(filter data exp-% train-% eval-% all-experiments submit $(RUNS)/%,$(MAKECMDGOALS))

# One command writes every split, the grid's and that of a run a goal names beyond it (make exp-lora-2.5k);
# it leaves unchanged files untouched, so a new size does not make the runs of the existing sizes out of date.
DATA_RECIPES = $(if $(PRODUCING),$(SETUP) experiments/base.yaml experiments/profiles/$(PROFILE).yaml $(PROCESSED)/.args)
DATA_SIZES := $(strip $(SIZES) $(sort $(filter-out $(SIZES),$(foreach g,$(filter-out %-base-nf4,$(filter exp-% train-%,$(MAKECMDGOALS))),$(word 3,$(subst -, ,$(g)))))))
$(PROCESSED)/manifest.json: $(DATA_RECIPES) $(if $(PRODUCING),$(wildcard $(SOURCE)))
	$(CLI) data $(CONFIG_ARGS) --raw-dir $(RAW_DIR) --out $(PROCESSED) --sizes $(DATA_SIZES)

# A track's items keep their time when unchanged (no evaluation redone for nothing): its report is the target.
$(MCQ_REPORTS): $(PROCESSED)/%_report.json: $(DATA_RECIPES) $(if $(PRODUCING),$(wildcard $(MCQ_SOURCE) $(GENERAL_SOURCE)))
	$(CLI) mcq-data $(CONFIG_ARGS) --track $* --out $(@D)/$*.jsonl

# The settings the data depends on (sizes, variants, data.* / cleaning.* / eval.mcq_* / eval.general_* overrides),
# remembered so that changing them reruns the data step and nothing else does. Decided when make
# reads this file, so that make -n shows the true plan.
DATA_SETTINGS = --sizes $(DATA_SIZES) $(VARIANT) $(filter data.% cleaning.% eval.mcq_% eval.general_%,$(OVERRIDES))
$(eval $(call remember,$(PROCESSED)/.args,$(DATA_SETTINGS)))

# A split is made by the data step, and rewritten only when its content changes: make re-reads its
# time after that step, so runs retrain exactly when their data changed. The same for the items.
$(PROCESSED)/mcq.jsonl $(PROCESSED)/general.jsonl: $(PROCESSED)/%.jsonl: | $(PROCESSED)/%_report.json ;
$(PROCESSED)/%.jsonl: | $(PROCESSED)/manifest.json ;

# Files that only pattern rules name (a split, a run's train.done) are intermediate to make:
# keep them after the make that needed them.
.PRECIOUS: $(PROCESSED)/%.jsonl $(RUNS)/%/train.done

# --- the base model -----------------------------------------------------------------------------
model: $(MODEL_DIR)/.ready ## fetch the base model into models/ and check it loads (demo: build the tiny one)
tiny-model: models/tiny-qwen2/.ready ## build the demo's tiny Qwen2 and its tokenizer, and pretrain it (~2 min, once)

# (for models/tiny-qwen2 the shorter stem makes this rule win over the hub rule below)
%/tiny-qwen2/.ready: $(SETUP) lib/tiny_model.py lib/data/synthetic.py lib/data/general_facts.py
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

# The untuned rows: base, and base-nf4 (the base in NF4 as a 4-bit method such as QLoRA loads it,
# evaluated with the first such method's configuration) where a method's recipe sets
# quantization.load_in_4bit (as lib.config.loads_in_4bit reads it: tests/test_makefile.py checks).
four_bit = $(patsubst experiments/%.yaml,%,$(shell grep -lsE '^\s+load_in_4bit:\s*true' $(1:%=experiments/%.yaml)))
FOUR_BIT_METHODS := $(call four_bit,$(METHODS))
NF4_METHOD = $(firstword $(FOUR_BIT_METHODS) $(call four_bit,$(basename $(notdir $(wildcard experiments/*.yaml)))))
UNTUNED = base $(if $(FOUR_BIT_METHODS),base-nf4)
all-experiments: $(RUN_NAMES:%=$(RUNS)/%/eval.json) $(UNTUNED:%=$(RUNS)/%/eval.json) ## the grid METHODS x SIZES x SEEDS, plus the base model (and base-nf4 for 4-bit methods)
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
		$$(call unless_kept,KEPT_EVALUATIONS,$$*,$(PROCESSED)/test.jsonl $(PROCESSED)/mcq.jsonl $(PROCESSED)/general.jsonl)
	$(call on_free_gpus,1) $(CLI) evaluate $(CONFIG_ARGS) --method $(call method_of,$*) --run-dir $(@D) --data $(PROCESSED)

UNTUNED_INPUTS = $(MODEL_DIR)/.ready $(PROCESSED)/test.jsonl $(PROCESSED)/mcq.jsonl $(PROCESSED)/general.jsonl
$(RUNS)/base/eval.json: $$(call unless_kept,KEPT_EVALUATIONS,base,$(UNTUNED_INPUTS))
	$(call on_free_gpus,1) $(CLI) evaluate $(CONFIG_ARGS) --run-dir $(@D) --data $(PROCESSED)

# a 4-bit method's configuration without an adapter: the base model loaded in NF4, as QLoRA trains on it
$(RUNS)/base-nf4/eval.json: $$(call unless_kept,KEPT_EVALUATIONS,base-nf4,$(UNTUNED_INPUTS))
	$(call on_free_gpus,1) $(CLI) evaluate $(CONFIG_ARGS) --method $(NF4_METHOD) --run-dir $(@D) --data $(PROCESSED)

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
		$(wildcard $(PROCESSED)/manifest.json $(PROCESSED)/mcq.jsonl $(PROCESSED)/general.jsonl)
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

include make/help.mk make/setup.mk make/use.mk make/review.mk make/slurm.mk make/bench.mk

.PHONY: FORCE
FORCE:
