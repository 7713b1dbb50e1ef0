# axb-bind-worker: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint typecheck demo chaos bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check worker tasks tests
	$(BIN)/ruff format --check worker tasks tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Two phases: most tests four at a time (they wait on workers and Redis more than they compute),
# then the timing-sensitive ones (marked `serial` in tests/conftest.py) alone. worksteal: an idle
# test process takes queued tests from a busy one, so a few long tests at the end do not leave
# three processes waiting.
test: $(STAMP)
	$(BIN)/ruff check worker tasks tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 4 --dist worksteal -m "not serial"
	$(BIN)/python -m pytest -q -m serial

demo: $(STAMP)
	$(BIN)/python -m worker.demo

# The reliability scenarios at full size (tests/test_chaos*.py; make test runs small ones).
chaos: $(STAMP)
	AXB_CHAOS_FULL=1 $(BIN)/python -m pytest -q -s tests/test_chaos*.py

# Performance against the naive SDK task and a bare Celery no-op, side by side in one run (~10 min
# on 2 cores). Prints one table; writes bench/results/latest.md and latest.json. Not part of
# `make test`. `$(BIN)/python -m bench --quick` is a 2-minute smoke run; `--profile` adds a py-spy
# profile of the worker (pip install py-spy into the venv first).
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info .axb-demo
