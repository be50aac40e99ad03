# Set-up and the two everyday jobs. Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint pytest bench clean browser postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/curator demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The review page is tested in Debian's Chromium (never a downloaded browser).
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "chromium is missing: sudo apt-get install chromium (its test is skipped)"; fi; }

# The catalog tests also run on PostgreSQL: Debian's server, started by the tests themselves
# as a throwaway cluster (tests/helpers/pg.py); without it they are skipped with the reason.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql; \
	  else echo "PostgreSQL is missing: sudo apt-get install postgresql (its tests are skipped)"; fi; }

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
# A test process killed by a signal: where it was, from the frames it wrote to .pytest-crash.log.
pytest: $(STAMP) browser postgres
	CURATOR_TEST_CRASH_LOG=$(CURDIR)/.pytest-crash.log $(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -gt 128 ] && [ -s .pytest-crash.log ]; then \
	  echo "the test process died by signal $$((rc - 128)); its frames:"; \
	  grep -v "^Extension modules" .pytest-crash.log | head -60; fi; \
	if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test: lint pytest

bench: $(STAMP)
	$(BIN)/python bench/near_duplicates.py
	$(BIN)/python bench/import_throughput.py
	$(BIN)/python bench/crawl_throughput.py
	$(BIN)/python bench/review_speed.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/score_throughput.py
	$(BIN)/python bench/export_formats.py
	$(BIN)/python bench/active_learning.py
	$(BIN)/python bench/load_million.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .pytest-crash.log
