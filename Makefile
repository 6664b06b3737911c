# The two commands of a fresh machine: `make repro` sets up and runs the pipeline, `make test` sets up and tests.
# Everything installs into .venv from requirements.lock (every package pinned, so a fresh install is the one the
# committed results were made with), then the project itself; nothing is assumed to be on the machine but
# python3. `make lock` re-resolves pyproject.toml's ranges and rewrites the lock.
VENV := .venv
PY := $(VENV)/bin/python
LOCK_VENV := .lock-venv
# Stage commands call `python` and `dvc`: make them the project's own.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test test-fast data docs lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Independent stages at once, one per free core (pipeline/repro.py): the same outputs as `dvc repro`.
repro: setup
	$(PY) -m pipeline.repro

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop: unit tests only (no pipeline stage, no training, no real teachers), a few minutes on 2 cores.
test-fast: setup
	$(PY) -m pytest -m "not slow and not real_data" $(PYTEST_ARGS)

# The real teachers, digits and textures, checked against their sha256 (docs/data.md); FROM=DIR copies them from
# a local folder instead of their public origins.
data: setup
	$(PY) -m skdcgn fetch $(if $(FROM),--from $(FROM))

docs: setup
	$(PY) -m mkdocs build --strict

lock:
	rm -rf $(LOCK_VENV)
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[test]'
	head -2 requirements.lock > requirements.lock.new
	$(LOCK_VENV)/bin/python -m pip freeze --exclude-editable >> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)
