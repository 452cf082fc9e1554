# Salon: `make demo` runs it on an embedded homeserver, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint format bench clean

# The virtualenv with Salon, its local-homeserver extra (Synapse) and the dev tools.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Salon needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache salon-data
