##@ Benchmarks, the GPU check and the memory plan
# Included by the Makefile: what the study costs, measured side by side (results/bench/).

.PHONY: bench bench-data bench-collation bench-generation bench-demo bench-gpu gpu-check plan

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

plan: $(SETUP) ## estimated GPU memory of each method for the 3B model, which cells fit a 16 GB T4, and the grid's GPU hours
	$(CLI) plan $(CONFIG_ARGS) --grid $(or $(GRID),default) --bench $(BENCH)/gpu-$(PROFILE).json --runs $(RUNS) --data $(PROCESSED) \
		--out $(BENCH)
