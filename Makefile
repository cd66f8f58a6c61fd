# Entry points: `make run`, `make test`, `make lint`, `make bench`, `make load`, `make contracts`,
# `make audit ARGS=...`.
# Each target sets up its own virtualenv (.venv) from pyproject.toml on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` workers (pytest-xdist), each with its own engines; the fault tests mostly wait, so two workers
# overlap their waits even on two cores. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

.PHONY: run test unit integration lint bench load contracts audit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_stack.py

# The whole suite on the engines setaccounts_dev.engines picks (embedded: Apache Kafka when java and mvn are
# there, else Tansu), then the smoke tests on Tansu unless that was the suite's broker already.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)
	@if $(BIN)/python -c 'from setaccounts_dev.engines import tansu_smoke_pass as p; raise SystemExit(not p())'; \
	then \
	  echo "== smoke tests on Tansu (the embedded broker without Java) =="; \
	  SETACCOUNTS_ENGINES=embedded SETACCOUNTS_EMBEDDED_KAFKA=tansu \
	    $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m smoke $(PYTEST_ARGS) || [ $$? -eq 5 ]; \
	fi

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.search --output docs/benchmarks.md
	$(BIN)/python -m benchmarks.fairness --output docs/benchmarks.md
	$(BIN)/python -m benchmarks.ceiling --output docs/benchmarks.md
	$(BIN)/python -m benchmarks.tracing --output docs/benchmarks.md

load: $(STAMP)
	$(BIN)/python -m benchmarks.load --output docs/benchmarks.md

# The audit CLI against the stack `make run` started in this checkout (or the servers in the environment).
audit: $(STAMP)
	$(BIN)/setaccounts-audit $(ARGS)

contracts: $(STAMP)
	$(BIN)/python -m setaccounts.events.export docs/events

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
