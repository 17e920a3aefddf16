# labelscan — the targets a newcomer guesses.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install labelscan with its dev tools

run: $(STAMP) ## embedded Valkey + gateway + analyzer + notifier, logs prefixed; Ctrl-C stops all
	$(PY) -m shared.run

test: $(STAMP) ## the whole suite against real servers
	$(PY) -m pytest

lint: $(STAMP) ## ruff + mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP) ## benchmarks; results in bench/results/
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
