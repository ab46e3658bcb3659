# Everything needs only Python 3.11+ and make: the first target creates .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo's own venv: tarry with its server extra and nothing else (no test tools).
DEMO_VENV := .venv-demo
DEMO_BIN := $(DEMO_VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/tarry-ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(DEMO_BIN)/tarry-ready: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_BIN)/pip install --quiet --upgrade pip
	$(DEMO_BIN)/pip install --quiet -e '.[server]'
	touch $@

## demo: the order-approval story on the embedded SQLite default, then the
## dashboard (Ctrl-C to stop) with one more order parked for you to approve:
## with the e-mailed approve link it prints, or from the dashboard's inbox
demo: $(DEMO_BIN)/tarry-ready
	$(DEMO_BIN)/python examples/order_approval.py
	$(DEMO_BIN)/tarry dev examples/order_approval.py

## lint: ruff and mypy (strict on the package)
lint: $(BIN)/tarry-ready
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

## test: lint, then the whole test suite on SQLite and PostgreSQL
test: lint
	$(BIN)/pytest -q

bench: $(BIN)/tarry-ready
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/signal_latency.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) .tarry .pytest_cache .mypy_cache .ruff_cache
