"""The OpenAPI document tells the truth: Schemathesis (every check: status codes, content types,
response schemas and headers, positive data accepted, negative data rejected, unsupported methods,
authentication) against the real app, in process: the local ASGI entry (ThreadedHttpResolver, the
adapter `meterbill run` serves) on the real services and adapters, moto in-process, tables from
template.yaml, the clock fixed at 2026-11-05.

Bounded and repeatable: a fixed seed, deterministic generation, a few fuzzed examples per
operation besides the documented examples and Schemathesis' coverage cases. The store is seeded
with one of everything (meters, plan, customer, events, an invoice, a credit note, a discount, a
grant) so the documented examples name things that exist and success responses are checked too.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import partial
from typing import Any

import pytest
import schemathesis
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from meterbill.api.asgi import ThreadedHttpResolver
from meterbill.api.documents import INVOICE_ID, NOTE_ID
from tests.conftest import FakeClock, ev

ADMIN = "mbtest_conformance_admin_0123456789abcdef"
SEED = 20261201
# Fuzzed examples per operation and generation mode (positive, negative), besides the documented
# examples and the coverage phase's cases. 20 runs in about half a minute; raise it to explore more
# (100 passed too, in 75 s).
FUZZ_EXAMPLES = int(os.environ.get("METERBILL_SCHEMATHESIS_EXAMPLES", "20"))

# Every check is on. positive_data_acceptance also takes 400 and 422, because the check below takes
# over for them: a schema-valid request may be refused only by a rule the schema cannot state.
CONFIG = f"""
seed = {SEED}
[generation]
mode = "all"
deterministic = true
database = "none"
max-examples = {FUZZ_EXAMPLES}
[auth.openapi.bearer]
bearer = "{ADMIN}"
[checks]
enabled = true
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]
"""

LISTS = ("GET /v1/meters", "GET /v1/plans", "GET /v1/tax-rates", "GET /v1/customers", "GET /v1/pending-customers",
         "GET /v1/dead-letters", "GET /v1/invoices", "GET /v1/credit-notes",
         "GET /v1/invoices/{invoice_id}/lines/{index}/usage", "GET /v1/api-keys", "GET /v1/billing-runs",
         "GET /v1/anomalies", "POST /v1/anomaly-scans")
# The rules a request can break although it matches the OpenAPI document, because JSON Schema
# cannot state them: they depend on what is stored, on the clock, or on an opaque token. Each is
# named in the document's descriptions. (operation, field at fault, error code) as regexes.
RULES_THE_SCHEMA_CANNOT_STATE: list[tuple[str, str, str]] = [
    *[(op, "cursor", "invalid_cursor|invalid_field") for op in LISTS],  # opaque: only next_cursor values
    # the clock
    ("PUT /v1/customers/{customer_id}/credit-grants/{grant_id}", "expires_at", "invalid_field"),  # in the future
    ("POST /v1/billing-runs", "as_of", "invalid_field"),  # not in the future
    # an open object: each charge model checks the fields it needs (ChargeIn says so)
    ("PUT /v1/plans/{code}", r"charges\[\d+\]\..+", "invalid_field|unknown_charge_model"),
    ("POST /v1/simulations", r"plan\.charges\[\d+\]\..+", "invalid_field|unknown_charge_model"),
    # bounds and precision of decimal strings (at most 100 %, more than 0, the currency's decimals):
    # the money grammar's part, to be stated by its patterns
    ("PUT /v1/tax-rates/{code}", "percentage", "invalid_field"),
    ("PUT /v1/customers/{customer_id}/discounts/{discount_id}", "percentage|amount", "invalid_field"),
    ("PUT /v1/customers/{customer_id}/credit-grants/{grant_id}", "amount", "invalid_field"),
    ("PUT /v1/customers/{customer_id}", "progressive_threshold", "invalid_field"),
    # names are printable (str.isprintable): JSON Schema has no Unicode categories
    ("PUT /v1/meters/{code}", "event_type", "invalid_characters"),
    # what is stored: contract terms name meters the plan charges; a simulated plan has the customers' currency
    ("PUT /v1/customers/{customer_id}", r"price_overrides(\..+)?", "invalid_field"),
    # ... a plan change takes effect after the invoiced periods, periods start from started_at
    ("PUT /v1/customers/{customer_id}", "plan_effective_at|started_at|billing_anchor", "invalid_field"),
    # the deployment's configuration: integrations enabled here (METERBILL_INTEGRATIONS)
    ("POST /v1/invoices/{invoice_id}/sync", "integration", "invalid_field"),
    # the host's time zone database
    ("PUT /v1/customers/{customer_id}", "timezone", "invalid_field"),
    ("POST /v1/simulations", "plan.currency", "invalid_field"),
    ("PUT /v1/customers/{customer_id}/discounts/{discount_id}", "meter", "invalid_field"),  # charged by the plan
    ("GET /v1/customers/{customer_id}/usage", "meter", "invalid_field"),  # a meter that exists
    # between parameters: from before to, at most MAX_WINDOWS windows
    ("GET /v1/customers/{customer_id}/usage", "from", "invalid_field"),
    # the clock and between fields: a scan's range ends by now, from before to, at most a year
    ("POST /v1/anomaly-scans", "from|to", "invalid_field"),
    # the dimensions a stored meter groups by; a report's range: from before to
    ("GET /v1/customers/{customer_id}/usage", "group_by", "invalid_field"),
    ("GET /v1/reports/(usage|revenue)", "from", "invalid_field"),
    # JSON Schema's strings hold any code points; ours are Unicode text that UTF-8 (DynamoDB) can store
    (".*", r"[^ ]*", "invalid_unicode"),
    # the amount grammar between fields: an amount's decimals follow the currency (of the plan, or of the
    # customer's plan), the prices of one charge span at most 11 digits together, a package's price per unit
    (".*", r".+", "amount_out_of_range"),
    # a whole plan or customer document's size (the sum of its fields) and a new started_at far back
    # without "backdate": true
    ("PUT /v1/plans/{code}|POST /v1/simulations|PUT /v1/customers/{customer_id}", r".*", "too_large"),
    ("PUT /v1/customers/{customer_id}", "started_at", "backdate_required"),
    # outbound webhooks: an https URL with a host (http only to localhost); listings' cursors
    ("PUT /v1/webhook-endpoints/{endpoint_id}", "url", "invalid_field"),
    ("GET /v1/webhook-endpoints|GET /v1/webhook-endpoints/{endpoint_id}/deliveries", "cursor",
     "invalid_cursor|invalid_field"),
    ("GET /v1/reconciliations/{reconciliation_id}", "cursor", "invalid_cursor"),  # opaque: only next_cursor values
    # what is stored: a payment is at most the invoice's balance and in its currency's decimals; a payment
    # names its reference unless the request carries an Idempotency-Key (between a header and the body)
    ("POST /v1/invoices/{invoice_id}/payments", "amount|reference|date", "invalid_field"),
]


def documented_rule(operation: str, field: str | None, code: str) -> bool:
    import re

    return any(re.fullmatch(op, operation) and re.fullmatch(f, field or "") and re.fullmatch(c, code)
               for op, f, c in RULES_THE_SCHEMA_CANNOT_STATE)


@schemathesis.check
def schema_valid_requests_are_refused_only_by_rules_the_schema_cannot_state(ctx: Any, response: Any,
                                                                             case: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return
    if response.status_code == 422 and case.operation.label == "POST /v1/events":
        return  # every event of the batch rejected on its own, each with its rule (EventIn, CloudEventIn)
    err = response.json().get("error", {}) if response.status_code == 400 else {}
    if not documented_rule(case.operation.label, err.get("field"), err.get("code", "")):
        raise AssertionError(f"a schema-valid request was refused: {response.status_code} {response.text[:300]}")


def seed_store(container: Any) -> None:
    """One of everything the examples in the OpenAPI document name (meterbill/api/openapi.py)."""
    from meterbill.local.stack import StreamPoller

    from tests.conftest import standard_plan

    c = standard_plan(container)
    c.put_tax_rate("vat-de", {"name": "VAT 19%", "percentage": "19", "country": "DE"})
    c.put_customer("acme", {"name": "Acme Inc", "email": "billing@acme.example", "plan": "pro",
                            "started_at": "2026-10-01T00:00:00Z", "billing_anchor": "2026-10-01T00:00:00Z"})
    events = [ev(f"evt-{i:04d}", tokens=300 * i, ts=f"2026-10-1{i}T10:00:00Z") for i in range(1, 4)]
    container.ingest.ingest(json.dumps({"events": events}), "application/json")

    def apply(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        container.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    StreamPoller(None, "t-events", apply).drain()
    invoice = container.billing.run(datetime(2026, 11, 1, tzinfo=timezone.utc)).invoices[0]
    note = container.credit_notes.issue(invoice, {"amount": "1.00", "reason": "other"}, "seed")
    assert (invoice, note["id"]) == (INVOICE_ID, NOTE_ID)  # ids derive from what they are: the examples name them
    container.accounts.put_discount("acme", "welcome20", {"type": "percentage", "percentage": "20"})
    container.accounts.put_grant("acme", "prepaid-2026", {"amount": "100.00"})


# The schema is loaded when this module is imported (Schemathesis' lazy pytest loader does not run on
# pytest 9), from an app of its own: the document needs no store. The requests go to the app the
# `app` fixture builds (the shared Router serves the app built last, so it is built at test time).
schema = schemathesis.openapi.from_asgi("/v1/openapi.json", build_app(HttpResolverLocal, lambda: None),
                                        config=schemathesis.config.SchemathesisConfig.from_str(CONFIG))


CASES: list[str] = []


@pytest.fixture(scope="module")
def app(request: pytest.FixtureRequest) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    from infra.template import create_queues, create_tables
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "t-events", "BillingTable": "t-billing"})
        queue = create_queues(boto3.client("sqs", region_name="us-east-1"), {"CloseQueue": "t-close"})["CloseQueue"]
        container = bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                                       usage_wait_s=0, stream_settle_s=0, close_queue_url=queue),
                              client=client, clock=FakeClock(datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc)),
                              cache_ttl_s=0)
        container.keys.create(["admin"], name="conformance", secret=ADMIN)
        seed_store(container)
        application = build_app(partial(ThreadedHttpResolver, workers=2), lambda: container)  # type: ignore[arg-type]
        started = time.monotonic()
        yield application
        elapsed = time.monotonic() - started
    application.close(5)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nschemathesis: {len(CASES)} cases, {len(set(CASES))} operations, {elapsed:.1f} s "
              f"(seed {SEED}, {FUZZ_EXAMPLES} fuzzed examples per operation and mode)")


@schema.parametrize()
def test_the_api_behaves_as_its_openapi_document_says(case: Any, app: Any) -> None:
    CASES.append(case.operation.label)
    case.call_and_validate(app=app)
