# How training is launched (included by the Makefile, whose run rules use $(LAUNCHER) and
# $(call on_free_gpus,N)): python (one process), accelerate or torchrun (several GPUs / nodes).
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
