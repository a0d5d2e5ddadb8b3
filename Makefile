# Slicebox: `make demo` runs the main job, `make test` the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench simulate clean

setup: $(STAMP)

# torch first and by exact version: pip takes the CPU build from the machine's local file
# (a bare `torch` requirement would fetch a multi-GB CUDA build instead).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	$(BIN)/slicebox demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	SLICEBOX_HYPOTHESIS=slow $(BIN)/python -m pytest -q -m 'slow or fuzz' || [ $$? -eq 5 ]  # 5: none selected

lint: setup
	$(BIN)/ruff check slicebox tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/slicebox bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
