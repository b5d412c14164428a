# The README's commands. `make serve` and `make test` each set up .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: serve train test lint format models bench bench-tables bench-synthetic bench-conditions bench-anomaly docker-test fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[serve]'
	touch $@

$(VENV)/.train-installed: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[serve,torch]'
	touch $@ $(VENV)/.serve-installed

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.serve-installed $(VENV)/.train-installed

serve: $(VENV)/.serve-installed
	$(BIN)/python -m app

# The training extra (torch, pandas, scikit-learn, SDMetrics) into .venv, then
# `python -m training $(ARGS)`: make train ARGS='train --data penguins --conditional --name my-penguins'.
# Without ARGS it installs and prints the commands.
train: $(VENV)/.train-installed
	$(BIN)/python -m training $(if $(ARGS),$(ARGS),--help)

test: $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-create the five default models (fixed seeds) into models/.
models: $(VENV)/.dev-installed
	$(BIN)/python -m training.defaults

# Load benchmarks on 127.0.0.1 (wrk from Debian's packages); writes bench/results/<date>.md.
bench: $(VENV)/.dev-installed
	@command -v wrk >/dev/null && command -v curl >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk curl >/dev/null)
	$(BIN)/python bench/run.py

# Tables: read/encode speed of a 53,940-row table, memory per epoch, generated rows per encoding and head
# (about 9 minutes; bench/results/<date>-tables.md). BENCH_TABLES_ARGS=--quick for about 2.
bench-tables: $(VENV)/.dev-installed
	$(BIN)/python bench/tables.py --threads 1 $(BENCH_TABLES_ARGS)

# Synthetic data side by side: genserve's defaults against SDV 2.0's TVAE, CTGAN and GaussianCopula
# on breast-cancer, penguins and 5,000 rows each of diamonds and pizzaplace (a date and a time column),
# five splits each, scored by training/quality.py (about 40 minutes; SDV runs from its own venv,
# bench/.sdv-venv, made on first use); --seeds 0 for one split (about 8), --tables to choose tables.
# Results in bench/results/<date>-synthetic.md.
bench-synthetic: $(VENV)/.dev-installed
	$(BIN)/python bench/synthetic.py

# Rows under conditions: genserve's against the real rows that meet them and SDV's sample_from_conditions
# (TVAE, CTGAN, GaussianCopula) on diamonds, 3 splits (about 10 minutes; SDV in bench/.sdv-venv)
bench-conditions: $(VENV)/.dev-installed
	$(BIN)/python bench/conditions.py

# Anomaly detection side by side: genserve's scores (core/scoring.py) against IsolationForest, LOF and
# pyod's ECOD and AutoEncoder (in bench/.pyod-venv, made once) on breast-cancer, digits 0/4/7 held out,
# and diamonds with one column moved, swapped or (a category) flipped, or two made inconsistent, over 5
# seeded splits; bench/results/<date>-anomaly.md.
bench-anomaly: $(VENV)/.dev-installed
	$(BIN)/python bench/anomaly.py

# Fuzz the whole API from its OpenAPI schema against a live server on 127.0.0.1 (thousands of
# cases; prints the number of cases run and failures). FUZZ_EXAMPLES: cases per operation and phase.
FUZZ_EXAMPLES ?= 300
fuzz: $(VENV)/.dev-installed
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py -k conforms -s -q

# Build the image and run it and the compose file for real (starts a Docker engine if needed).
docker-test: $(VENV)/.dev-installed
	bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
