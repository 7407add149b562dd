# Quick start: `make demo` (offline demo study) and `make test` (the test suite).
# Both create .venv with the pinned dependencies of requirements.lock on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR := demo-run

.PHONY: demo test lint dry-run bench clean-demo

$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/snakemake --cores 2 --configfile demo/config.yaml --directory $(DEMO_DIR)
	@echo "Report: $(CURDIR)/$(DEMO_DIR)/results/report.html"

test: $(INSTALLED)
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/snakemake --lint

dry-run: $(INSTALLED)
	$(BIN)/snakemake --dry-run --quiet rules

bench: $(INSTALLED)
	$(BIN)/python tests/benchmarks/dry_run.py

clean-demo:
	rm -rf $(DEMO_DIR)
