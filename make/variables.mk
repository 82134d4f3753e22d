# The variables a user types, checked before anything runs (included by the Makefile, after its
# variables). python -m lib check-variables (lib/make_variables.py) gets every variable given on the
# command line or in the environment, and the goals, while make reads the Makefile: so every
# target, make -n too, passes through it. It names the first one that is wrong in one line, and make
# stops there.

comma := ,
space := $(subst ,, )
shell_quote = '$(subst ','\'',$(1))'
given = $(filter command $(if $(filter COLUMNS,$(1)),,environment),$(firstword $(origin $(1))))
USER_VARIABLES = PROFILE GRID METHODS SIZES SEEDS SEED TEST_SIZE DEV_SIZE VARIANT SET COLUMNS MCQ_COLUMNS MODEL SOURCE MCQ_SOURCE \
	GENERAL_SOURCE MODEL_SOURCE EXP LAUNCH ACCELERATE_CONFIG NPROC GPUS HOST PORT NAME REPO MERGED REDO DATA_DIR RESULTS_DIR \
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
