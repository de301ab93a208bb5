# lis-gateway: `make demo` runs it, `make test` proves it. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: all venv test lint typecheck unit demo bench fuzz clean postgresql chromium

all: test

# Debian's python3 has no venv/ensurepip unless python3-venv is installed.
$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-venv (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test]'
	@touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The store tests start a throwaway PostgreSQL with initdb/pg_ctl (Debian: `postgresql`).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The browser tests drive Debian's Chromium through Playwright (never a browser download).
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

unit: $(STAMP) postgresql chromium
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/lis-gateway demo

# `make test` fuzzes each parser for 10 s; this runs the same harnesses longer
# (FUZZ_SECONDS each, at the same time). Crashing inputs are saved in var/fuzz/.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	LIS_FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest -q tests/fuzz/test_atheris.py

# `make bench` (about 15 min) or `make bench BENCH_ARGS=--quick` (about 6 min); results in
# bench/results/*.json. PostgreSQL is installed if missing; without it (offline) its rows
# are reported as not measured and the rest still runs.
bench: $(STAMP)
	@$(MAKE) --no-print-directory postgresql || echo "bench: PostgreSQL could not be installed; its figures will be missing"
	$(BIN)/python bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
