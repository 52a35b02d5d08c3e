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

.PHONY: run test lint typecheck unit container-smoke fault bench bench-timers bench-replicas openapi clean

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

openapi: $(STAMP)
	$(BIN)/ticketbridge openapi --output openapi.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
