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
SAM_RUNTIME_VERSION ?= 3.12
SAM_PIP_TARGET_FLAGS ?= --platform manylinux2014_aarch64 --implementation cp \
	--python-version $(SAM_RUNTIME_VERSION) --only-binary=:all:

SAM_FUNCTIONS := ApiFunction IngestFunction AggregatorFunction ClosePeriodsFunction CloseWorkerFunction \
	OutboxFanoutFunction StripeDispatchFunction StripeWebhookFunction HubSpotDispatchFunction XeroDispatchFunction
SAM_FUNCTIONS += AnomaliesFunction
SAM_FUNCTIONS += WebhooksDispatchFunction
SAM_FUNCTIONS += ReconcileFunction
SAM_FUNCTIONS += DunningFunction

.PHONY: $(addprefix build-,$(SAM_FUNCTIONS))

$(addprefix build-,$(SAM_FUNCTIONS)):
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set; run this target via `sam build`))
	cd "$(METERBILL_ROOT)" && $(SAM_PYTHON) -m pip install --no-compile \
		--disable-pip-version-check $(SAM_PIP_TARGET_FLAGS) -t "$(ARTIFACTS_DIR)" .
	$(MAKE) -f "$(METERBILL_ROOT)/infra/sam-build.mk" compile-artifacts ARTIFACTS_DIR="$(ARTIFACTS_DIR)"

# Bytecode compiled at build time: /var/task is read-only on Lambda, so without .pyc files every
# cold start compiles every module from source (docs/performance.md, cold start). The .pyc must be
# the runtime's (cpython-312), so only an interpreter of that version compiles them (e.g.
# `sam build --use-container`); another build host skips it with a warning. Hash-based and
# unchecked: the deployment zip keeps mtimes at 2-second resolution, which would invalidate
# timestamp-based .pyc and send Lambda back to compiling.
.PHONY: compile-artifacts
compile-artifacts:
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set))
	@if $(SAM_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(SAM_RUNTIME_VERSION)".split("."))))'; then \
		$(SAM_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)"; \
	else \
		echo "warning: $(SAM_PYTHON) is not Python $(SAM_RUNTIME_VERSION): no .pyc compiled (Lambda compiles at each cold start; use sam build --use-container)" >&2; \
	fi
