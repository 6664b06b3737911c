# The two commands of a fresh machine: `make repro` sets up and runs the pipeline, `make test` sets up and tests.
# Everything installs from pyproject.toml into .venv; nothing is assumed to be on the machine but python3.
VENV := .venv
PY := $(VENV)/bin/python
# Stage commands call `python` and `dvc`: make them the project's own.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

repro: setup
	dvc repro

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)
