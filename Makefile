# Two commands for a newcomer: `make demo` and `make test`. Both (re)build .venv from
# pyproject.toml first, so a fresh clone needs nothing else.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test test-slurm demo clean-demo

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# profiles/slurm against a real SLURM: a one-node test cluster with two fake GPUs runs the CI
# world through the profile and compares it with a local run (tests/slurm/). Needs root. Its
# runs stay in SLURM_TEST_DIR for inspection (pytest's shared temp folders rotate away).
SLURM_TEST_DIR ?= /tmp/interpsharp-test-slurm
test-slurm: $(STAMP)
	@[ "$$(id -u)" -eq 0 ] || { echo "make test-slurm: must run as root (it installs slurm-wlm and munge and starts their daemons); on a real cluster use --profile profiles/slurm" >&2; exit 1; }
	INTERPSHARP_TEST_SLURM=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests/slurm -v -s --basetemp=$(SLURM_TEST_DIR); \
	status=$$?; scripts/slurm-test-cluster.sh stop; exit $$status

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
