# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit docs console-browser container-check container-smoke fault bench bench-timers bench-replicas bench-console openapi clean mutation screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## set up and run on SQLite with the built-in policy
	$(BIN)/ticketbridge serve

test: $(STAMP) lint typecheck console-browser  ## set up, lint, type-check, run every test, build the docs, check the image
	$(BIN)/pytest
	$(MAKE) --no-print-directory docs
	$(MAKE) --no-print-directory container-check

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) console-browser
	$(BIN)/pytest -m "not fault"

docs: $(STAMP)  ## the documentation site, strictly (a broken link fails), into site/
	$(BIN)/python scripts/settings_reference.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The console's browser tests (tests/console) drive Debian's Chromium headless: installed with
# apt when missing (run as root), like container-check installs buildah. A missing browser
# fails those tests rather than skipping them.
console-browser:  ## Debian's Chromium for the console's browser tests
	@test -x /usr/bin/chromium || { \
	  test "$$(id -u)" = 0 || { echo "console-browser: /usr/bin/chromium is missing; as root: apt-get install chromium" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Builds the Dockerfile, runs the image and waits for /healthz (Docker or Podman when an engine
# answers, else buildah, installed on Debian when missing: run as root). A missing tool fails the
# target: skipping would let a broken image through CI.
container-check:  ## build the image and check that it serves
	bash scripts/container-check .

container-smoke: container-check  ## the former name of container-check

bench: $(STAMP)  ## ingest throughput and webhook-to-page latency (SQLite), ~2 min
	$(BIN)/python bench/run.py

bench-timers: $(STAMP)  ## 100,000 pending timers, 10,000 due in one second, ~2 min
	$(BIN)/python bench/timers.py

bench-console: $(STAMP)  ## console pages with 100,000 tickets, SQLite and PostgreSQL, ~3 min
	$(BIN)/python bench/console.py

bench-replicas: $(STAMP)  ## PostgreSQL, one replica and two, beside SQLite, ~5 min
	$(BIN)/python bench/replicas.py

# Not part of `make test`: mutants of rules/ against the rules' fast tests ([tool.mutmut] in
# pyproject.toml). Bounded by MUTATION_TIMEOUT seconds; prints the score and every mutant not
# killed (`.venv/bin/mutmut show NAME` shows one as a diff).
MUTATION_TIMEOUT ?= 3600
mutation: $(STAMP)  ## mutation score of rules/ and its surviving mutants, ~50 min
	rm -rf mutants && mkdir mutants
	timeout $(MUTATION_TIMEOUT) $(BIN)/mutmut run > mutants/run.log 2>&1 || \
	  { tail -c 3000 mutants/run.log; echo "mutation: mutmut failed or ran past $(MUTATION_TIMEOUT) s" >&2; exit 1; }
	$(BIN)/mutmut export-cicd-stats > /dev/null
	$(BIN)/mutmut results
	@$(BIN)/python -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
	  s["score"] = 100 * s["killed"] / s["total"]; \
	  print("rules/: %(killed)d of %(total)d mutants killed (%(score).1f %%); %(survived)d survived, \
	  %(no_tests)d reached by no test, %(timeout)d timed out" % s)'

screenshots: $(STAMP) console-browser  ## a PNG of each console page, seeded, into docs/console/
	$(BIN)/python scripts/console_screenshots.py

openapi: $(STAMP)
	$(BIN)/ticketbridge openapi --output openapi.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
