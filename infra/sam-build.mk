# SAM build targets for `BuildMethod: makefile` (included by the root Makefile).
#
# `sam build` runs `make build-<LogicalId>` with ARTIFACTS_DIR set to the
# function's artifact directory. All functions ship the same code (the
# whole project plus its runtime dependencies), so they share one recipe.
#
# Lambda runs python3.12 on arm64 (see template.yaml Globals), which is usually
# not the build host, so dependencies are resolved as binary wheels for that
# platform (pydantic-core is compiled). Override SAM_PIP_TARGET_FLAGS= (empty)
# to install for the host instead, e.g. with `sam build --use-container`.

# Repo root = parent of this fragment's directory. Evaluated once, at include
# time, so it is right whatever the working directory or include order.
METERBILL_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

SAM_PYTHON ?= python3
SAM_PIP_TARGET_FLAGS ?= --platform manylinux2014_aarch64 --implementation cp \
	--python-version 3.12 --only-binary=:all:

SAM_FUNCTIONS := ApiFunction IngestFunction AggregatorFunction ClosePeriodsFunction CloseWorkerFunction \
	OutboxFanoutFunction StripeDispatchFunction StripeWebhookFunction
SAM_FUNCTIONS += DunningFunction

.PHONY: $(addprefix build-,$(SAM_FUNCTIONS))

$(addprefix build-,$(SAM_FUNCTIONS)):
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set; run this target via `sam build`))
	cd "$(METERBILL_ROOT)" && $(SAM_PYTHON) -m pip install --no-compile \
		--disable-pip-version-check $(SAM_PIP_TARGET_FLAGS) -t "$(ARTIFACTS_DIR)" .
