# Two commands for a newcomer: `make demo` and `make test`. Both (re)build .venv first, from the
# exact versions of requirements.lock, so a fresh clone needs nothing else and gets the same
# packages as CI. `make venv LOCKED=0` installs from pyproject.toml's ranges instead (another
# platform, newer releases); `make lock` regenerates the lock from those ranges.
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK ?= requirements.lock
LOCKED ?= 1
# One stamp per install mode, so switching LOCKED rebuilds; a rebuild starts from an empty venv
# (--clear), so nothing of an earlier install survives beside the lock's versions.
STAMP := $(VENV)/.installed-$(if $(filter 1,$(LOCKED)),locked,unlocked)

.PHONY: venv test test-slurm demo clean-demo lock

$(STAMP): pyproject.toml $(if $(filter 1,$(LOCKED)),$(LOCK))
	python3 -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
ifeq ($(LOCKED),1)
	@# Every package at the lock's version and hash; then the project itself, adding nothing.
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps -e .
else
	$(VENV)/bin/pip install --quiet -e '.[test]'
endif
	$(VENV)/bin/pip check
	touch $(STAMP)

venv: $(STAMP)

# INTERPSHARP_LOCK: tests/test_environment.py then checks the venv holds exactly the lock's versions.
test: $(STAMP)
	$(if $(filter 1,$(LOCKED)),INTERPSHARP_LOCK=$(LOCK)) $(PY) -m pytest

# Regenerate requirements.lock (exact versions and sha256 of every package, for every platform and
# Python >= 3.11, one version of each where possible) and envs/interpsharp.yaml from it, with a
# pinned uv in its own small venv. Newest releases pyproject.toml allows; LOCK_UPGRADE= keeps the
# present pins where they still fit (after adding a dependency). A constraints file pip is
# configured with on this machine (`pip config list`) applies too, so pip here can install the lock.
UV_VERSION := 0.13.9
LOCK_TOOLS ?= .venv-lock
LOCK_UPGRADE ?= --upgrade
PIP_CONSTRAINT ?= $(shell python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.constraint='\(.*\)'$$/\1/p" | head -1)
lock:
	[ -x $(LOCK_TOOLS)/bin/uv ] && [ "$$($(LOCK_TOOLS)/bin/uv --version)" = "uv $(UV_VERSION)" ] || \
		{ python3 -m venv --clear $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet uv==$(UV_VERSION); }
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --extra test --universal --fork-strategy fewest \
		--generate-hashes $(LOCK_UPGRADE) $(if $(PIP_CONSTRAINT),--constraint $(PIP_CONSTRAINT)) \
		--custom-compile-command "make lock" --quiet -o $(LOCK)
	python3 scripts/conda-env-from-lock.py $(LOCK) envs/interpsharp.yaml

# profiles/slurm against a real SLURM: a one-node test cluster with two fake GPUs runs the CI
# world through the profile and compares it with a local run (tests/slurm/). Needs root. Its
# runs stay in SLURM_TEST_DIR for inspection (pytest's shared temp folders rotate away).
SLURM_TEST_DIR ?= /tmp/interpsharp-test-slurm
test-slurm: $(STAMP)
	@[ "$$(id -u)" -eq 0 ] || { echo "make test-slurm: must run as root (it installs slurm-wlm and munge and starts their daemons); on a real cluster use --profile profiles/slurm" >&2; exit 1; }
	INTERPSHARP_TEST_SLURM=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests/slurm -v -s --basetemp=$(SLURM_TEST_DIR); \
	status=$$?; scripts/slurm-test-cluster.sh stop; exit $$status

# No OMP_WAIT_POLICY=PASSIVE here: every demo job but pretraining runs on one thread (no OpenMP
# team that could spin against another job), and pretraining runs alone on both cores, where
# PASSIVE's sleeping threads made its steps 25% slower (60 steps: 22.7-23.0 s against
# 17.5-18.1 s unset, same machine, same hour).
demo: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/demo

# The GPU acceptance run (README, "Checking a GPU"): every GPU claim of SPEC measured in at most
# 8 minutes on one H100/H200, results in results/gpu_acceptance/. Independent of how the venv is
# made: .venv's Python when there is one, else python3 (a GPU machine without internet whose
# python3 has torch and received the missing packages as wheels). BENCH_ARGS passes options,
# e.g. BENCH_ARGS="--only 1 6" or "--smoke".
BENCH_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)
.PHONY: bench-gpu
bench-gpu:
	OMP_WAIT_POLICY=PASSIVE $(BENCH_PYTHON) benchmarks/gpu_acceptance.py $(BENCH_ARGS)
