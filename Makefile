# meterbill — every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Node dev tools (Prism, for tests/contract): installed from the lockfile when missing or changed.
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json | cksum | cut -d' ' -f1)

.PHONY: run test test-fast bench demo lint typecheck clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

$(NODE_STAMP): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-*; touch $@

## Start meterbill locally: moto server + tables from template.yaml + HTTP API on :8000 + timers.
run: $(STAMP) $(if $(METERBILL_INTEGRATIONS),$(NODE_STAMP))
	$(BIN)/meterbill run

## Run the whole test suite (unit, integration on moto, vendor contracts on Prism, end-to-end).
test: $(STAMP) $(NODE_STAMP)
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

## Type-check the integration contract and vendor modules against the SDKs' typed params.
typecheck: $(STAMP)
	$(BIN)/mypy meterbill/integration integrations

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis .meterbill .mypy_cache

include infra/sam-build.mk

## The customer portal's screenshots in docs/images (needs Debian's chromium: apt-get install -y chromium).
screenshots: $(STAMP)
	PORTAL_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/e2e/test_portal_browser.py -q -k sees
