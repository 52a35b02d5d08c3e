# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Builds the Dockerfile and checks that the container answers /healthz, with buildah when no
# Docker engine answers (it installs buildah and makes its Debian base on first use; root).
# CI runs in a clean clone with shared/ beside it, so this path holds there; elsewhere set
# CONTAINER_SMOKE=/path/to/shared/tools/container-smoke.
CONTAINER_SMOKE ?= ../shared/tools/container-smoke

.PHONY: run test lint typecheck unit container-smoke fault bench bench-timers bench-replicas openapi clean mutation

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## set up and run on SQLite with the built-in policy
	$(BIN)/ticketbridge serve

test: $(STAMP) lint typecheck  ## set up, lint, type-check, run every test, smoke the image
	$(BIN)/pytest
	$(MAKE) --no-print-directory container-smoke

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not fault"

# A missing tool fails the target: skipping would let a broken image through CI.
container-smoke:  ## build the image and check that it serves
	@test -f "$(CONTAINER_SMOKE)" || { echo "container-smoke: $(CONTAINER_SMOKE) not found;" \
	  "CI has shared/ beside the project; set CONTAINER_SMOKE to the tool's path" >&2; exit 1; }
	bash "$(CONTAINER_SMOKE)" .
	@if command -v buildah >/dev/null; then \
	  echo "container-smoke: image size $$(buildah images --format '{{.Size}}' localhost/smoke-under-test:latest)"; fi

bench: $(STAMP)  ## ingest throughput and webhook-to-page latency (SQLite), ~2 min
	$(BIN)/python bench/run.py

bench-timers: $(STAMP)  ## 100,000 pending timers, 10,000 due in one second, ~2 min
	$(BIN)/python bench/timers.py

bench-replicas: $(STAMP)  ## PostgreSQL, one replica and two, beside SQLite, ~5 min
	$(BIN)/python bench/replicas.py

# Not part of `make test`: mutants of rules/ against the rules' fast tests ([tool.mutmut] in
# pyproject.toml). Bounded by MUTATION_TIMEOUT seconds; prints the score and every mutant not
# killed (`.venv/bin/mutmut show NAME` shows one as a diff).
MUTATION_TIMEOUT ?= 2700
mutation: $(STAMP)  ## mutation score of rules/ and its surviving mutants, ~30 min
	rm -rf mutants && mkdir mutants
	timeout $(MUTATION_TIMEOUT) $(BIN)/mutmut run > mutants/run.log 2>&1 || \
	  { tail -c 3000 mutants/run.log; echo "mutation: mutmut failed or ran past $(MUTATION_TIMEOUT) s" >&2; exit 1; }
	$(BIN)/mutmut export-cicd-stats > /dev/null
	$(BIN)/mutmut results
	@$(BIN)/python -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
	  s["score"] = 100 * s["killed"] / s["total"]; \
	  print("rules/: %(killed)d of %(total)d mutants killed (%(score).1f %%); %(survived)d survived, \
	  %(no_tests)d reached by no test, %(timeout)d timed out" % s)'

openapi: $(STAMP)
	$(BIN)/ticketbridge openapi --output openapi.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
