# Salon: `make demo` runs it on an embedded homeserver, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install postgres-binaries chromium demo test test-fast lint format bench screenshots clean

# The virtualenv with Salon, its local-homeserver extra (Synapse) and the dev tools.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Salon needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP) postgres-binaries chromium

# The store's tests start a throwaway PostgreSQL: install its server binaries when they
# are missing and we may (root with apt-get); otherwise those tests fail saying so.
PG_BINDIR_GLOB := /usr/lib/postgresql/*/bin/initdb
postgres-binaries:
	@if ls $(PG_BINDIR_GLOB) >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing the PostgreSQL server for the store tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive \
		     apt-get install -y --no-install-recommends postgresql; }; \
	else \
		echo "note: no PostgreSQL server binaries (initdb); the PostgreSQL store tests will" \
		     "fail until they are installed (apt-get install postgresql)"; \
	fi

# The dashboard's browser tests drive Debian's headless Chromium (never a downloaded
# browser): install it when it is missing and we may (root with apt-get).
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium for the dashboard's browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive \
		     apt-get install -y --no-install-recommends chromium; }; \
	else \
		echo "note: no $(CHROMIUM); the dashboard's browser tests will fail until it is" \
		     "installed (apt-get install chromium)"; \
	fi

# `make demo PORT=8010` (or SALON_PORT=8010 in the environment) picks the homeserver's
# port; a PORT variable merely present in the environment is not taken for this one.
demo: install
	$(BIN)/salon up --config examples/salon.yaml$(if $(filter command line,$(origin PORT)), --port $(PORT))

lint: install
	$(BIN)/ruff format --check src tests bench deploy
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests bench deploy
	$(BIN)/ruff check --fix src tests bench deploy

# Everything: lint, then the whole suite (a real Synapse, child processes). CI runs this.
test: lint
	$(BIN)/python -m pytest

# The unit tier for your own loop: no homeserver, no child process (about a minute).
test-fast: install
	SALON_FAST_TIER=1 $(BIN)/python -m pytest -m "not synapse and not subprocess" -q

bench: install
	$(BIN)/python bench/roundtrip.py

# The dashboard's screenshots in docs/img (light and dark), made by the browser tests' harness.
screenshots: install
	SALON_SCREENSHOTS=docs/img $(BIN)/python -m pytest tests/integration/test_dashboard_browser.py -q -k screenshots

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache salon-data
