# jaxfit: `make run` runs the seed, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow test-all lint format bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools tells of every editable install in a 10-line banner: not news here
$(STAMP): pyproject.toml | $(BIN)/python
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m jaxfit --config configs/b3.yaml

# a worker per core (at most 4: each holds a JAX); a test file stays on one worker (its module
# fixtures run once). `make test`: everything but the slow tests, which `make test-slow` runs
# (long benches, size-dependent properties, real-process runs); .ci/run runs both.
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

test: $(STAMP)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

test-all: $(STAMP)
	$(PYTEST)

lint: $(STAMP)
	$(BIN)/ruff check jaxfit tests
	$(BIN)/ruff format --check jaxfit tests

format: $(STAMP)
	$(BIN)/ruff format jaxfit tests
	$(BIN)/ruff check --fix jaxfit tests

bench: $(STAMP)
	$(BIN)/python -m jaxfit bench

bench-gpu:
	$(PYTHON) -m jaxfit bench --gpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
