##@ Looking and cleaning up
# Included by the Makefile.

.PHONY: help vars clean-data clean-runs

help: ## list every target with one line of help (the default goal)
	@echo "usage: make <target> [PROFILE=paper|demo] [VARIABLE=value ...]   (README.md explains each)"
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z0-9_%.-]+:.*## / \
		{printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "variables: PROFILE GRID METHODS SIZES SEEDS MODEL VARIANT SET SOURCE COLUMNS MCQ_SOURCE MCQ_COLUMNS GENERAL_SOURCE DATA_DIR"
	@echo "           TEST_SIZE DEV_SIZE SEED REDO LAUNCH ACCELERATE_CONFIG NPROC LAUNCH_ARGS EXP TORCH_INDEX MODEL_SOURCE"
	@echo "           GPUS GPU_LOCKS (make -jN) PARTITION GRES TIME SBATCH_ARGS (make submit)"
	@echo "           HOST PORT NAME (make review) HOST PORT REPO MERGED (make serve, make push)"
	@echo "           WHEELHOUSE (make setup) WHEELHOUSE_DIR SLIM WHEEL_PYTHON WHEEL_PLATFORM (make wheelhouse)"

vars: ## print the grid, model and paths this invocation would use
	@echo "PROFILE=$(PROFILE)"; echo "METHODS=$(METHODS)"; echo "SIZES=$(SIZES)"; echo "SEEDS=$(SEEDS)"
	@echo "MODEL=$(MODEL)"; echo "MODEL_DIR=$(MODEL_DIR)"; echo "PROCESSED=$(PROCESSED)"; echo "RUNS=$(RUNS)"
	@echo "RUN_NAMES=$(RUN_NAMES)"

clean-data: ## delete the processed splits of PROFILE (raw downloads are kept)
	rm -rf $(PROCESSED)

clean-runs: ## delete every run, summary and figure of PROFILE (asks nothing: think first)
	rm -rf $(RESULTS) $(GENERATED) $(BUILD_DIR)/$(PROFILE)
