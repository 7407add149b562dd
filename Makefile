# Quick start: `make demo` (offline demo study) and `make test` (the test suite).
# Both create .venv with the pinned dependencies of requirements.lock on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR := demo-run

.PHONY: demo test lint dry-run bench clean-demo slurm chromium cuda

$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@if $(BIN)/pip show --quiet onnxruntime-gpu 2>/dev/null; then $(MAKE) --no-print-directory cuda; fi
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/snakemake --cores 2 --configfile demo/config.yaml --directory $(DEMO_DIR)
	@echo "Report: $(CURDIR)/$(DEMO_DIR)/results/report.html (it links the second prompt set's)"

test: $(INSTALLED) slurm chromium lint
	$(BIN)/python -m pytest

# NudeNet on the GPU: onnxruntime's CUDA build in place of its CPU build in .venv (the
# classify conda environment gets it from the same script); kept when .venv is updated.
cuda:
	@test -x $(BIN)/python || $(MAKE) --no-print-directory $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" envs/classify.post-deploy.sh

# The SLURM test (tests/test_slurm.py) starts a one-node cluster from Debian's packages:
# installed here when missing and this is a root Debian machine; elsewhere the test skips
# and says why.
SLURM_PROGRAMS := /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sbatch
slurm:
	@if ls $(SLURM_PROGRAMS) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing SLURM and munge for the SLURM test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; \
	else \
		echo "SLURM is not installed and cannot be installed here (needs root and apt-get): the SLURM test will skip"; \
	fi

# The browser test (tests/test_browser.py) opens the report in headless Chromium: Debian's
# chromium is installed when missing and this is a root Debian machine; elsewhere the test
# skips and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium for the browser test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium >/dev/null; \
	else \
		echo "chromium is not installed and cannot be installed here (needs root and apt-get): the browser test will skip"; \
	fi

# Linters, pinned in requirements.lock; any finding fails `make test`.
lint: $(INSTALLED)
	$(BIN)/ruff check src scripts tests
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

dry-run: $(INSTALLED)
	$(BIN)/snakemake --dry-run --quiet rules

bench: $(INSTALLED)
	$(BIN)/python tests/benchmarks/dry_run.py

clean-demo:
	rm -rf $(DEMO_DIR)
