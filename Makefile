# Developer entry points. Everything runs from the virtualenv in .venv, created on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint bench run clean

# Every bench/*.py is a benchmark but the modules they share. Each runs as a module
# (python -m bench.NAME) so that the repository root, not bench/, is on the import path.
BENCH_HELPERS := bench/databases.py bench/load.py bench/processes.py bench/reporting.py
BENCHES := $(filter-out $(BENCH_HELPERS),$(wildcard bench/*.py))

install: $(STAMP)

# Re-install when the dependency list changes; otherwise the stamp keeps this a no-op.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# bench/http_api.py loads the servers with wrk: install it from Debian when it is missing and
# this user may (root, or sudo without a password); otherwise that script says so.
bench: install
	@command -v wrk >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
		$$SUDO apt-get install -y -qq wrk >/dev/null 2>&1 \
			|| { $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq wrk >/dev/null 2>&1; } \
			|| echo "warning: could not install wrk (apt-get install wrk)"; \
	}
	@set -e; for script in $(BENCHES); do \
		echo "== $$script"; \
		$(BIN)/python -m "bench.$$(basename "$$script" .py)"; \
	done

# The embedded database (./prep_es.db) with demo data, served on http://127.0.0.1:8000
# (OpenAPI at /docs). Loading the demo again is a no-op; `prep-es demo --reset` reloads it.
run: install
	$(BIN)/prep-es demo
	$(BIN)/prep-es serve

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
