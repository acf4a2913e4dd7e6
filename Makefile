# Two commands for a newcomer: `make run` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The DEMO archive's settings, written by `archive demo seed` into the data folder.
DEMO_CONFIG := var/demo.toml

.PHONY: run test setup lint bench clean help

help:
	@echo "make run    set up and start the archive on http://127.0.0.1:8000 (SQLite + local folder)"
	@echo "make test   set up and run every test (starts PostgreSQL and SeaweedFS on loopback)"
	@echo "make lint   ruff"
	@echo "make bench  run the benchmarks in bench/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,demo]'
	touch $(STAMP)

setup: $(STAMP)

# The seed generates a DEMO PKI and ingests signed samples with signature enforcement on
# (docs/demo.md); serve uses the settings it wrote (absent for an archive seeded otherwise).
run: $(STAMP)
	$(VENV)/bin/archive init --if-needed
	$(VENV)/bin/archive demo seed --if-empty
	ARCHIVE_CONFIG="$$(test -f $(DEMO_CONFIG) && echo $(DEMO_CONFIG))" $(VENV)/bin/archive serve

test: $(STAMP)
	bash scripts/system-deps.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache
