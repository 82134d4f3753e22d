##@ The grid on a Slurm cluster
# Included by the Makefile. One array task per unfinished run (make exp-<run>) and a job after the
# array for the report, submitted by python -m lib submit (lib/slurm.py) with
# experiments/slurm/array.sbatch and report.sbatch. The data and the model are prepared here
# first: login nodes reach the network, compute nodes often do not, and the tasks must not all
# prepare the data at once.

PARTITION ?=#               sbatch --partition of every job
GRES ?=#                    sbatch --gres of each run, e.g. gpu:1
TIME ?=#                    sbatch --time of every job, e.g. 12:00:00
SBATCH_ARGS ?=#             more sbatch options for every job, e.g. --account=abc --qos=normal
# The variables that reach every job's make: those given to make submit (on its command line or
# in the environment); the others keep their defaults, worked out on the node (NPROC counts its GPUs).
JOB_VARIABLES = PROFILE GRID METHODS SIZES SEEDS MODEL VARIANT SET SOURCE COLUMNS MCQ_SOURCE MCQ_COLUMNS GENERAL_SOURCE TEST_SIZE \
	DEV_SIZE SEED DATA_DIR RESULTS_DIR GENERATED_DIR BUILD_DIR LAUNCH ACCELERATE_CONFIG NPROC LAUNCH_ARGS PYTHON VENV

.PHONY: submit

submit: data model ## the unfinished runs as a Slurm job array, then a job for the summary, figures and report
	@unfinished=$$(for run in $(RUN_NAMES) $(UNTUNED); do $(MAKE) -q $(RUNS)/$$run/eval.json || echo $$run; done); \
	report_done=$$($(MAKE) -q $(GENERATED)/report.done && echo --report-done || true); \
	$(CLI) submit --runs $$unfinished $$report_done --out $(RESULTS)/slurm --job-name medqa-$(PROFILE) \
		--partition '$(PARTITION)' --gres '$(GRES)' --time '$(TIME)' --sbatch-args $(call shell_quote,$(SBATCH_ARGS)) \
		$(foreach v,$(JOB_VARIABLES),$(if $(call given,$(v)),--variable $(call shell_quote,$(v)=$($(v)))))
