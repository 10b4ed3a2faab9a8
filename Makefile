# Quick start:  make demo  |  make test
# Everything runs from a virtualenv in .venv, made on first use from the python3 on PATH.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Branch coverage floor (percent): raise it as tests grow, never lower it.
COV_FLOOR ?= 90

.PHONY: demo test lint typecheck bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rxbus needs Python 3.11+; found " + sys.version.split()[0] + " (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rxbus demo

# The whole suite: unit, integration (real servers), reliability, notebooks, and every
# benchmark run once (no timing) so none can rot. Exit code 5 (no tests ran) is a failure.
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --benchmark-disable \
		--cov --cov-branch --cov-report=term --cov-fail-under=$(COV_FLOOR) $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Measured benchmarks (slow; not part of 'make test'), printed as a table with ratios.
bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks -p no:cacheprovider --benchmark-only \
		--benchmark-columns=min,median,mean,rounds --benchmark-sort=name $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .benchmarks .coverage
