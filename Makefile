# meterbill — every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test test-fast bench demo lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

## Start meterbill locally: moto server + tables from template.yaml + HTTP API on :8000 + timers.
run: $(STAMP)
	$(BIN)/meterbill run

## Run the whole test suite (unit, integration on moto, end-to-end through the local stack).
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## Against a running `make run`: create a meter, plan, customer, send events, print the invoice.
demo: $(STAMP)
	$(BIN)/meterbill demo

## Benchmarks: one figure per line, `name: value unit`.
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .meterbill

include infra/sam-build.mk
