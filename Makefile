# Two entry points: `make run` starts Tally on the embedded store, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-clocks bench clean

$(BIN)/tally: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/tally $@

run: $(BIN)/tally
	$(BIN)/tally serve --demo

test: $(VENV)/.dev
	$(BIN)/ruff check tally tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The whole suite again on SQLite, each run on a wall clock shifted to where dates and clocks turn (ZONE@INSTANT):
# a month's and a year's first half hour; and Paris's two clock changes, each run crossing the change at 01:00 UTC
# (Paris's noon on those days found nothing more, at two more minutes of CI each: add them here to look again).
CLOCKS := UTC@2027-01-01T00:30:00Z Europe/Paris@2026-03-29T00:58:30Z Europe/Paris@2026-10-25T00:58:30Z

test-clocks: $(VENV)/.dev
	@failed=""; for clock in $(CLOCKS); do \
		zone=$${clock%@*}; instant=$${clock#*@}; \
		echo "== the suite at $$instant, in $$zone"; \
		env -u TALLY_TEST_POSTGRES_URL TZ=$$zone TALLY_ANALYTICS_TIMEZONE=$$zone TALLY_TEST_CLOCK=$$instant \
			$(BIN)/python -m pytest -q || failed="$$failed $$clock"; \
	done; \
	if [ -n "$$failed" ]; then echo "the suite failed at:$$failed"; exit 1; fi

bench: $(VENV)/.dev
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) *.egg-info
