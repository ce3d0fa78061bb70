# Set-up and entry points. `make demo` and `make test` create the environment when it is missing.
#   make setup            CPU environment in .venv (Python 3.11)
#   make setup GPU=cu112  GPU environment: mxnet-cu112 + NVIDIA's CUDA 11 pip packages
#   make lock             refresh the pinned, hashed lock files (envs/*.lock.txt) that setup installs
#   make demo             the whole pipeline on the embedded synthetic data, on CPU (minutes)
#   make test             the whole test suite, end-to-end workflow runs included (minutes)
#   make test-fast        pure functions and config validation only, no snakemake runs (< 1 minute)
#   make test-cluster     the demo through a throwaway local Slurm cluster, and the ssh launcher
#                         through a throwaway sshd (root; installs slurm-wlm and openssh-server)
#   make lint             snakemake --lint, snakefmt --check, ruff check and ruff format --check
#   make config-docs      regenerate config/README.md's key tables from the config schema
#   make cpu-real         real CIFAR-10 on the CPU: cifar10_quick, then the twins, 3 seeds (2 cores: ~4 h)
#   make benchmark        training loop vs bare Module.fit and parameter servers vs one process on the
#                         demo data; fp32 vs bf16 per network; the data chain vs the naive route, and cifar10_quick's time to 85 %
#                         and 90 % (trained first if it has not been: ~25 min), on the real CIFAR-10
#                         (needs ../shared/tools/cifar10_from_jpg.py)
#   make benchmark-cluster  the demo through a throwaway local Slurm vs the local profile, and a run
#                         over several jobs: each stop's and resume's cost, the lease's overhead (root)
#   make report-screenshot  the demo report rendered by headless Chromium (apt-get install chromium)

PYTHON ?= python3.11
VENV ?= .venv
GPU ?=
CORES ?= 2
SHELL := bash

# The requirements files say what the project asks for; their .lock.txt twins (make lock) pin every
# package, dependencies included, at an exact version with its hashes, and are what setup installs.
REQUIREMENTS := envs/requirements$(if $(GPU),-$(GPU)).txt
LOCK := $(REQUIREMENTS:.txt=.lock.txt)
SLURM_LOCK := envs/requirements-slurm.lock.txt
STAMP := $(VENV)/.setup-$(if $(GPU),$(GPU),cpu)
# Without GPU=..., use whichever environment is already set up rather than replacing it.
READY := $(if $(GPU),$(STAMP),$(or $(firstword $(wildcard $(VENV)/.setup-*)),$(STAMP)))
# activate puts the environment's tools first on PATH and, for GPU, the CUDA libraries on
# LD_LIBRARY_PATH (rules run under snakemake's own interpreter either way).
RUN := source $(VENV)/bin/activate &&

.PHONY: setup lock demo cpu-real test test-fast test-cluster lint config-docs benchmark benchmark-cluster report-screenshot clean-demo

setup: $(STAMP)

$(VENV)/.setup-%: $(LOCK) $(SLURM_LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' is not Python 3.11 (it is: $$($(PYTHON) --version 2>&1))."; \
	  echo "  mxnet 1.9.1 needs numpy < 1.24, whose last wheels are for Python <= 3.11, and"; \
	  echo "  snakemake 9 needs Python >= 3.11. Install Python 3.11, then: make setup PYTHON=/path/to/python3.11"; \
	  exit 1; }
	rm -f $(VENV)/.setup-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(SLURM_LOCK)
	$(if $(GPU),$(VENV)/bin/python envs/wire_cuda_libraries.py $(VENV)/bin/activate)
	$(RUN) python -c 'import mxnet, cv2; print("mxnet", mxnet.__version__, "| opencv", cv2.__version__)' || { \
	  echo "error: the new environment in $(VENV) cannot import mxnet (see above).$(if $(GPU), mxnet-$(GPU)\
	  needs an NVIDIA driver >= 450.80 (libcuda.so.1); on a machine without one use 'make setup'.)"; exit 1; }
	touch $@

# Refreshes the lock files from the requirements files (then `make setup` installs them). The slurm
# plugin's lock holds only what requirements-slurm.txt lists: it is installed without dependencies.
LOCK_OPTIONS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet
lock: $(READY)
	$(VENV)/bin/uv pip compile envs/requirements.txt $(LOCK_OPTIONS) -o envs/requirements.lock.txt
	$(VENV)/bin/uv pip compile envs/requirements-cu112.txt $(LOCK_OPTIONS) -o envs/requirements-cu112.lock.txt
	$(VENV)/bin/uv pip compile envs/requirements-slurm.txt --no-deps $(LOCK_OPTIONS) -o $(SLURM_LOCK)

# The demo's small training jobs run fastest on one core each, side by side.
demo: $(READY)
	$(RUN) snakemake --cores $(CORES) --set-threads train=1 --configfile config/demo.yaml \
	  --replace-workflow-config all report

test: $(READY)
	$(RUN) python -m pytest

test-fast: $(READY)
	$(RUN) python -m pytest -m "not workflow"

# A throwaway local Slurm cluster (Debian's slurm-wlm and munge, four fake GPUs) runs the demo
# through workflow/profiles/slurm, and a throwaway sshd on 127.0.0.1 stands in for two machines of
# the ssh launcher; only the daemons started here are stopped afterwards.
SLURM_DIR ?= /tmp/cifar-repro-slurm
SSHD_DIR ?= /tmp/cifar-repro-sshd
test-cluster: $(READY)
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "test-cluster: skipped: a local Slurm cluster needs root (apt-get, mknod, daemons)"; exit 0; fi; \
	trap 'bash tests/cluster/local_slurm.sh stop $(SLURM_DIR); bash tests/cluster/local_sshd.sh stop $(SSHD_DIR)' EXIT; \
	bash tests/cluster/local_slurm.sh start $(SLURM_DIR) && bash tests/cluster/local_sshd.sh start $(SSHD_DIR) && \
	$(RUN) SLURM_CONF=$(SLURM_DIR)/slurm.conf CIFAR_REPRO_SSH=$(SSHD_DIR) \
	  python -m pytest -m cluster tests/test_cluster.py tests/test_distributed.py

# config/README.md's key tables, from the schema (a test fails when they are stale)
config-docs: $(READY)
	PYTHONPATH=scripts $(VENV)/bin/python -m cifar_repro.config_docs config/README.md

lint: $(READY)
	$(RUN) snakemake --lint
	$(RUN) snakefmt --check workflow
	$(RUN) ruff check .
	$(RUN) ruff format --check .

DEMO_REC := results/demo/cifar10/rec
# the 60 000 real CIFAR-10 images in the official archive layout, rebuilt from ../shared's JPEGs
# (or any archive in that layout: make benchmark REAL_ARCHIVE=/path/to/cifar-10-python.tar.gz)
# config/cpu-real.yaml's URL
CPU_REAL_ARCHIVE := results/benchmark/cifar-10-python.tar.gz
REAL_ARCHIVE ?= $(CPU_REAL_ARCHIVE)
JPG_TOOL := ../shared/tools/cifar10_from_jpg.py
$(sort $(REAL_ARCHIVE) $(CPU_REAL_ARCHIVE)): | $(READY)
	@[ -f $(JPG_TOOL) ] || { echo "error: $@ is built by $(JPG_TOOL), which is not here;" \
	  "give an archive in the cifar-10-python.tar.gz layout with REAL_ARCHIVE=path"; exit 1; }
	mkdir -p $(dir $@)
	$(RUN) python $(JPG_TOOL) $@

# Real CIFAR-10 on the CPU (config/cpu-real.yaml): cifar10_quick's 3 seeds first, each alone on
# every core (its training time is a measurement), then the ResNet-20 twins, one core each, two at a time.
CPU_REAL := $(RUN) snakemake --cores $(CORES) --configfile config/cpu-real.yaml --replace-workflow-config
QUICK_METRICS := $(foreach seed,0 1 2,results/cpu-real/experiments/cifar10_quick/seed$(seed)/metrics.csv)
cpu-real: $(READY) $(CPU_REAL_ARCHIVE)
	$(CPU_REAL) $(QUICK_METRICS)
	$(CPU_REAL) all report --set-threads train=1

benchmark: $(READY) $(REAL_ARCHIVE) $(CPU_REAL_ARCHIVE)
	$(RUN) snakemake --cores $(CORES) --configfile config/demo.yaml --replace-workflow-config \
	  $(DEMO_REC)/train.rec $(DEMO_REC)/test.rec
	$(RUN) PYTHONPATH=scripts OMP_NUM_THREADS=$(CORES) python scripts/benchmarks/training_loop.py --output-dir results/demo
	$(RUN) PYTHONPATH=scripts python scripts/benchmarks/distributed_overhead.py --output-dir results/demo \
	  --tsv results/benchmark/distributed.tsv
	$(RUN) PYTHONPATH=scripts python scripts/benchmarks/precision.py --threads $(CORES)
	$(RUN) PYTHONPATH=scripts python scripts/benchmarks/data_chain.py --archive $(REAL_ARCHIVE)
	$(CPU_REAL) $(QUICK_METRICS)
	$(RUN) PYTHONPATH=scripts python scripts/benchmarks/time_to_accuracy.py --config config/cpu-real.yaml \
	  --experiment cifar10_quick --tsv results/benchmark/time_to_accuracy.tsv

# The demo through a throwaway local Slurm against the local profile, and what a run over several
# jobs pays (root, like test-cluster).
benchmark-cluster: $(READY)
	trap 'bash tests/cluster/local_slurm.sh stop $(SLURM_DIR)' EXIT; \
	NODE_CPUS=$(CORES) bash tests/cluster/local_slurm.sh start $(SLURM_DIR) && \
	$(RUN) SLURM_CONF=$(SLURM_DIR)/slurm.conf python scripts/benchmarks/cluster_overhead.py --cores $(CORES) && \
	$(RUN) SLURM_CONF=$(SLURM_DIR)/slurm.conf PYTHONPATH=scripts python scripts/benchmarks/long_runs.py --cores $(CORES)

clean-demo:
	rm -rf results/demo

# Renders the demo's report in headless Chromium (Debian package `chromium`) to look at it as a reader.
REPORT ?= results/demo/report.html
report-screenshot:
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
	  --user-data-dir=$$(mktemp -d) --window-size=1400,1000 --virtual-time-budget=15000 \
	  --screenshot=$(basename $(REPORT)).png file://$(abspath $(REPORT))
