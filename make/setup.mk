##@ Setting up and testing
# Included by the Makefile: the environment, TeX, the test systems' set-ups, the tests and lint.

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

.PHONY: setup setup-tex setup-slurm setup-browser wheelhouse setup-wheelhouses tex test test-fast lint

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

test-fast: $(SETUP) ## the tests without the slow end-to-end ones, for development (no pretraining: a random-weight tiny model)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# A real Slurm on one machine, for the test of make submit (tests/test_slurm.py starts its daemons).
setup-slurm: ## Slurm and munge for the submit test (Debian/Ubuntu, apt; ~30 s)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
