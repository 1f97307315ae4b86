"""What the API answers, as JSON Schema for the OpenAPI document (openapi.py): the error envelope
and every resource, with examples taken from real responses. Fields every answer has are
``required``; resources may grow fields (``additionalProperties`` is left open), so clients ignore
what they do not know. Amounts, quantities and rates are decimal strings."""

from __future__ import annotations

from typing import Any

from meterbill.domain.meters import AGGREGATIONS

STRING = {"type": "string"}
DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "decimal string"}
INSTANT = {"type": "string", "description": "RFC 3339, UTC", "examples": ["2026-10-01T00:00:00Z"]}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
OBJECT = {"type": "object"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """``required`` properties are always in the answer, ``optional`` ones may be absent or null."""
    maybe = {name: schema if "anyOf" in schema else nullable(schema) for name, schema in (optional or {}).items()}
    return {"type": "object", "required": list(required), "properties": {**required, **maybe}, **extra}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def page(item: str) -> dict[str, Any]:
    return obj({"data": array(ref(item)), "next_cursor": nullable(STRING)},
               description="A page; pass next_cursor as cursor for the next one (null: last page).")


PERIOD = obj({"start": INSTANT, "end": INSTANT})
PARTY = obj({"id": STRING, "name": STRING}, {"email": nullable(STRING), "address": OBJECT, "tax_id": nullable(STRING)})
STAMPS = {"created_at": INSTANT, "updated_at": INSTANT, "version": INT}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj({"error": obj({"code": STRING, "message": STRING, "field": nullable(STRING)},
                               {"details": array(obj({"field": STRING, "problem": STRING}))})},
                 additionalProperties=False,
                 description="Every error: a machine code, a sentence, and the field at fault (null: none in "
                             "particular; 'body', 'content-type', a path or query parameter, or a body field path)."),
    "Health": obj({"status": {"type": "string", "enum": ["ok"]},
                   "aggregation": obj({"status": {"type": "string", "enum": ["caught_up", "behind", "unknown"]}},
                                      {"lag_s": {"type": "number"}, "oldest_unapplied": STRING, "shard": STRING})}),
    "Meter": obj({"code": STRING, "event_type": STRING, "aggregation": {"type": "string", "enum": list(AGGREGATIONS)},
                  "filter": OBJECT, "group_by": array(STRING), "keep_values": BOOL, **STAMPS},
                 {"property": STRING, "name": STRING, "unit": STRING}),
    "Plan": obj({"code": STRING, "currency": STRING, "interval": STRING, **STAMPS},
                {"base_fee": DECIMAL, "charges": array(obj({"meter": STRING, "model": STRING})), "name": STRING,
                 "rounding": STRING, "minimum_commitment": DECIMAL}),
    "TaxRate": obj({"code": STRING, "name": STRING, "percentage": DECIMAL, "country": STRING, **STAMPS},
                   {"state": STRING}),
    "Customer": obj({"id": STRING, "name": STRING, "plan": STRING, "currency": STRING, "timezone": STRING,
                     "started_at": INSTANT, "billing_anchor": INSTANT, "payment_terms_days": INT,
                     "closed_through": STRING, **STAMPS},
                    {"email": nullable(STRING), "metadata": OBJECT, "address": OBJECT, "price_overrides": OBJECT,
                     "plan_history": array(OBJECT)}),
    "PendingCustomer": obj({"customer": STRING, "events": INT, "last_seen": INSTANT}, {"first_event_ms": INT}),
    "DeadLetter": obj({"batch": STRING}, description="usage the aggregator kept aside, and why"),
    "Event": obj({"id": STRING, "customer": STRING, "type": STRING, "timestamp": INSTANT,
                  "properties": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean",
                                                                                    "null"]}},
                  "accepted_at_ms": INT, "flag": nullable({"type": "string", "enum": ["pending", "late"]})}),
    "IngestResult": obj({"received": INT, "accepted": INT, "duplicates": INT, "rejected": INT,
                         "pending": array(STRING), "late": array(STRING),
                         "errors": array(obj({"index": INT, "id": nullable(STRING), "field": STRING,
                                              "code": STRING, "message": STRING}))}),
    "Invoice": obj({"id": STRING, "number": nullable(STRING), "status": STRING, "customer_id": STRING,
                    "customer": PARTY, "currency": STRING, "period": PERIOD,
                    "lines": array(obj({"type": STRING, "description": STRING, "amount": DECIMAL})),
                    "subtotal": DECIMAL, "total": DECIMAL, "amount_due": DECIMAL},
                   {"issued_at": INSTANT, "due_at": INSTANT, "tax_total": DECIMAL, "discount_total": DECIMAL,
                    "payment_url": STRING,
                    "integrations": {"type": "object", "additionalProperties": ref("SyncState"),
                                     "description": "each enabled integration's sync state (GET only)"}}),
    "SyncState": obj({"status": {"type": "string", "enum": ["pending", "in_flight", "synced", "failed", "unknown"]},
                      "attempts": INT},
                     {"external_id": nullable(STRING), "number": nullable(STRING), "url": nullable(STRING),
                      "error": nullable(STRING), "updated_at": nullable(INSTANT), "actions": array(OBJECT)}),
    "SyncQueued": obj({"invoice": STRING, "queued": {"type": "object", "additionalProperties": INT}}),
    "LineUsage": obj({"invoice": STRING, "index": INT, "meter": STRING, "aggregation": STRING, "period": PERIOD,
                      "quantity": nullable(DECIMAL), "total": DECIMAL, "events": INT,
                      "buckets": array(obj({"start": INSTANT, "group": OBJECT, "value": DECIMAL, "events": INT})),
                      "next_cursor": nullable(STRING)}),
    "Usage": obj({"customer": STRING, "from": INSTANT, "to": INSTANT, "window": STRING, "timezone": STRING,
                  "meters": array(obj({"meter": STRING, "aggregation": STRING,
                                       "points": array(obj({"start": INSTANT, "end": INSTANT, "value": DECIMAL,
                                                            "events": INT}, {"group": OBJECT}))},
                                      {"total": DECIMAL, "totals": array(OBJECT)}))},
                 {"previous": OBJECT, "change": array(OBJECT)}),
    "Discount": obj({"id": STRING, "type": STRING, "duration": STRING, "created_at": INSTANT},
                    {"percentage": DECIMAL, "amount": DECIMAL, "active": BOOL, "ended_at": INSTANT}),
    "Discounts": obj({"data": array(ref("Discount"))}),
    "CreditGrant": obj({"id": STRING, "amount": DECIMAL, "remaining": DECIMAL, "currency": STRING,
                        "granted_at": INSTANT}, {"expires_at": nullable(INSTANT)}),
    "Credits": obj({"customer_id": STRING, "currency": STRING, "balance": DECIMAL, "grants": array(OBJECT)}),
    "CreditNote": obj({"id": STRING, "number": STRING, "invoice_id": STRING, "customer_id": STRING,
                       "currency": STRING, "subtotal": DECIMAL, "total": DECIMAL, "status": STRING,
                       "created_at": INSTANT}, {"lines": array(OBJECT)}),
    "BillingRunSummary": obj({"id": STRING, "status": {"type": "string", "enum": ["dispatching", "running", "finished"]},
                              "trigger": {"type": "string", "enum": ["api", "schedule"]}, "as_of": INSTANT,
                              "started_at": INSTANT, "finished_at": nullable(INSTANT), "queued": INT, "closed": INT,
                              "waiting": INT, "failed": INT, "given_up": INT},
                             {"usage_wait_started_at": INSTANT, "usage_lag": OBJECT},
                             description="a billing run's counters: finished once queued = closed + failed + given_up"),
    "BillingRun": {"allOf": [ref("BillingRunSummary"), obj({
        "failures": array(obj({"customer": STRING, "task": STRING, "reason": STRING})),
        "waiting_customers": array(obj({"customer": STRING, "task": STRING, "attempts": INT, "given_up": BOOL,
                                        "drafts": array(STRING)}))})],
        "description": "a billing run with its failed customers (and why) and those waiting for usage (first 100 of each)"},
    "BillingRunPage": page("BillingRunSummary"),
    "ApiKey": obj({"id": STRING, "scopes": array(STRING), "created_at": INSTANT, "status": STRING},
                  {"name": STRING, "expires_at": INSTANT, "revoked_at": INSTANT, "last_used_at": INSTANT},
                  description="an API key as listed: never the secret or its digest"),
    "CustomerExport": obj({"customer_id": STRING, "exported_at": INSTANT, "profile": OBJECT,
                           "discounts": array(OBJECT), "credit_grants": array(OBJECT),
                           "late_usage_markers": array(OBJECT), "invoices": array(OBJECT),
                           "credit_notes": array(OBJECT), "usage": OBJECT, "dead_letters": array(OBJECT),
                           "raw_events": OBJECT, "audit": array(OBJECT)},
                          {"pending_usage": OBJECT, "erasure": OBJECT},
                          description="everything meterbill holds about a customer"),
    "Erasure": obj({"customer_id": STRING, "erased_at": INSTANT, "kept": OBJECT},
                   description="what an erasure removed, pseudonymised and kept"),
    "Simulation": obj({"currency": nullable(STRING), "customers": array(OBJECT), "old_subtotal": DECIMAL,
                       "new_subtotal": DECIMAL, "difference": DECIMAL}),
}
for _name in ("Meter", "Plan", "TaxRate", "Customer", "PendingCustomer", "DeadLetter", "Invoice", "CreditNote",
              "ApiKey"):
    SCHEMAS[f"{_name}Page"] = page(_name)

# -- examples: real answers of the seeded store of tests/integration/test_openapi_conformance.py
INVOICE_ID = "in_ee30267f8530f78e08fa"
NOTE_ID = "cn_cc6e97e6278d90cde398"
RUN_ID = "run_6f1c2d3e4a5b6c7d8e9f0a1b2c"
_RUN = {"id": RUN_ID, "status": "finished", "trigger": "api", "as_of": "2026-11-01T00:00:00Z",
        "started_at": "2026-11-05T12:00:00Z", "finished_at": "2026-11-05T12:00:04Z", "queued": 1, "closed": 1,
        "waiting": 0, "failed": 0, "given_up": 0, "usage_wait_started_at": "2026-11-05T12:00:00Z"}
_METER = {"code": "tokens", "event_type": "api.call", "aggregation": "sum", "property": "tokens", "filter": {},
          "group_by": [], "keep_values": False, "created_at": "2026-11-05T12:00:00Z",
          "updated_at": "2026-11-05T12:00:00Z", "version": 1}
_PLAN = {"code": "pro", "currency": "USD", "interval": "month", "base_fee": "49.00", "charges": [
    {"meter": "tokens", "model": "graduated",
     "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}]},
    {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}],
    "created_at": "2026-11-05T12:00:00Z", "updated_at": "2026-11-05T12:00:00Z", "version": 1}
_TAX = {"code": "vat-de", "name": "VAT 19%", "percentage": "19", "country": "DE", "created_at": "2026-11-05T12:00:00Z",
        "updated_at": "2026-11-05T12:00:00Z", "version": 1}
_CUSTOMER = {"id": "acme", "name": "Acme Inc", "email": "billing@acme.example", "plan": "pro", "currency": "USD",
             "price_overrides": {}, "started_at": "2026-10-01T00:00:00Z", "billing_anchor": "2026-10-01T00:00:00Z",
             "timezone": "UTC", "payment_terms_days": 30, "address": {}, "metadata": {}, "tax_exempt": False,
             "created_at": "2026-11-05T12:00:00Z", "updated_at": "2026-11-05T12:00:00Z", "version": 2,
             "closed_through": "2026-11-01T00:00:00Z"}
_PARTY = {"id": "acme", "name": "Acme Inc", "email": "billing@acme.example", "address": {}, "tax_id": None}
_OCT = {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
_INVOICE = {"id": INVOICE_ID, "number": "T-000001", "status": "final", "customer_id": "acme", "customer": _PARTY,
            "plan": "pro", "currency": "USD", "period": _OCT, "issued_at": "2026-11-01T00:00:00Z",
            "due_at": "2026-12-01T00:00:00Z", "payment_terms_days": 30,
            "lines": [{"type": "base_fee", "description": "pro base fee", "amount": "49.00", "period": _OCT},
                      {"type": "usage", "description": "tokens", "amount": "14.00", "period": _OCT, "meter": "tokens",
                       "quantity": "1800"},
                      {"type": "usage", "description": "calls", "amount": "0.00", "period": _OCT, "meter": "calls",
                       "quantity": "3", "unit_amount": "0.001"}],
            "subtotal": "63.00", "discount_total": "0.00", "tax_total": "0.00", "total": "63.00",
            "credits_applied": "0.00", "amount_due": "62.00", "credited_total": "1.00"}
_NOTE = {"id": NOTE_ID, "number": "CN-000001", "invoice_id": INVOICE_ID, "invoice_number": "T-000001",
         "customer_id": "acme", "customer": _PARTY, "currency": "USD", "reason": "other", "lines": [],
         "subtotal": "1.00", "tax_total": "0.00", "total": "1.00", "credited_to_invoice": "1.00",
         "credited_to_balance": "0.00", "status": "issued", "created_at": "2026-11-05T12:00:00Z"}
_EVENT = {"id": "evt-0001", "customer": "acme", "type": "api.call", "timestamp": "2026-10-11T10:00:00Z",
          "properties": {"tokens": 300}, "accepted_at_ms": 1793880000000, "flag": None}
_DISCOUNT = {"id": "welcome20", "type": "percentage", "duration": "once", "applied": 0,
             "created_at": "2026-11-05T12:00:00Z", "percentage": "20", "active": True}
_GRANT = {"id": "prepaid-2026", "amount": "100.00", "remaining": "100.00", "currency": "USD",
          "granted_at": "2026-11-05T12:00:00Z", "expires_at": None, "reason": None, "source": "grant"}

EXAMPLES: dict[str, Any] = {
    "Health": {"status": "ok", "aggregation": {"status": "caught_up", "lag_s": 0}},
    "Meter": _METER, "MeterPage": {"data": [_METER], "next_cursor": None},
    "Plan": _PLAN, "PlanPage": {"data": [_PLAN], "next_cursor": None},
    "TaxRate": _TAX, "TaxRatePage": {"data": [_TAX], "next_cursor": None},
    "Customer": _CUSTOMER, "CustomerPage": {"data": [_CUSTOMER], "next_cursor": None},
    "PendingCustomerPage": {"data": [{"customer": "newco", "events": 2, "first_event_ms": 1793876400000,
                                      "last_seen": "2026-11-05T12:00:00Z"}], "next_cursor": None},
    "DeadLetterPage": {"data": [], "next_cursor": None},
    "CustomerExport": {"customer_id": "acme", "exported_at": "2026-11-05T12:00:00Z",
                       "profile": {"id": "acme", "name": "Acme Inc", "plan": "pro"}, "discounts": [],
                       "credit_grants": [], "late_usage_markers": [], "pending_usage": None, "invoices": [],
                       "credit_notes": [], "usage": {}, "dead_letters": [],
                       "raw_events": {"included": False}, "erasure": None,
                       "audit": [{"action": "export", "key_id": "key_0123456789abcdef", "at": "2026-11-05T12:00:00Z"}]},
    "Erasure": {"customer_id": "acme", "erased_at": "2026-11-05T12:00:00Z", "kept": {}},
    "ApiKeyPage": {"data": [{"id": "key_0123456789abcdef", "name": "billing job", "scopes": ["read"],
                             "created_at": "2026-11-05T12:00:00Z", "status": "active"}], "next_cursor": None},
    "ApiKey": {"id": "key_0123456789abcdef", "name": "billing job", "scopes": ["read"],
               "created_at": "2026-11-05T12:00:00Z", "revoked_at": "2026-11-05T12:00:00Z", "status": "revoked"},
    "Event": _EVENT,
    "IngestResult": {"received": 2, "accepted": 1, "duplicates": 0, "rejected": 1, "pending": [], "late": [],
                     "errors": [{"index": 1, "id": "evt-0005", "field": "timestamp", "code": "required",
                                 "message": "is required"}]},
    "Invoice": _INVOICE, "InvoicePage": {"data": [_INVOICE], "next_cursor": None},
    "SyncState": {"status": "synced", "external_id": "in_1QabcD", "number": "ABCD-0001",
                  "url": "https://invoice.stripe.com/i/acct_1/test_1", "error": None, "attempts": 1,
                  "updated_at": "2026-11-05T12:00:00.000Z"},
    "SyncQueued": {"invoice": INVOICE_ID, "queued": {"stripe": 1}},
    "LineUsage": {"invoice": INVOICE_ID, "index": 1, "meter": "tokens", "aggregation": "sum", "group_by": [],
                  "unit": None, "period": _OCT, "quantity": "1800", "total": "1800", "events": 3,
                  "buckets": [{"start": "2026-10-11T10:00:00Z", "group": {}, "value": "300", "events": 1}],
                  "next_cursor": None},
    "Usage": {"customer": "acme", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "window": "day",
              "timezone": "UTC", "meters": [{"meter": "tokens", "aggregation": "sum", "points": [
                  {"start": "2026-10-11T00:00:00Z", "end": "2026-10-12T00:00:00Z", "value": "300", "events": 1}]}]},
    "Discount": _DISCOUNT, "Discounts": {"data": [_DISCOUNT]},
    "CreditGrant": _GRANT,
    "Credits": {"customer_id": "acme", "currency": "USD", "balance": "100.00", "grants": [_GRANT]},
    "CreditNote": _NOTE, "CreditNotePage": {"data": [_NOTE], "next_cursor": None},
    "BillingRunSummary": _RUN, "BillingRunPage": {"data": [_RUN], "next_cursor": None},
    "BillingRun": {**_RUN, "failures": [], "waiting_customers": []},
    "Simulation": {"currency": "USD", "customers": [{"customer": "acme", "periods": [
        {"period": _OCT, "invoice": "T-000001", "old_subtotal": "63.00", "new_subtotal": "29.00",
         "difference": "-34.00"}]}], "old_subtotal": "63.00", "new_subtotal": "29.00", "difference": "-34.00"},
}

# -- reports (GET /v1/reports/usage|revenue|aging) ------------------------------------------------
SCHEMAS["Report"] = obj(
    {"report": STRING, "group_by": STRING, "columns": array(STRING),
     "rows": array({"type": "object", "additionalProperties": {"anyOf": [STRING, INT]},
                    "description": "one value per column: money and quantities as exact decimal strings"}),
     "read": obj({"items": INT, "rcu": {"type": "number"}})},
    {"from": INSTANT, "to": INSTANT, "as_of": INSTANT, "customer": STRING, "meter": STRING,
     "totals": array(OBJECT)},
    description="A report: its rows (also as CSV: Accept: text/csv or format=csv), totals per currency, and "
                "what it read (items, read capacity units)")
EXAMPLES["Report"] = {
    "report": "revenue", "group_by": "period", "from": "2026-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z",
    "columns": ["period", "currency", "invoices", "billed", "credits_applied", "credited", "collected", "outstanding",
                "uncollectible"],
    "rows": [{"period": "2026-10", "currency": "USD", "invoices": 1, "billed": "63.00", "credits_applied": "0.00",
              "credited": "0.00", "collected": "0.00", "outstanding": "63.00", "uncollectible": "0.00"}],
    "totals": [{"currency": "USD", "invoices": 1, "billed": "63.00", "credits_applied": "0.00", "credited": "0.00",
                "collected": "0.00", "outstanding": "63.00", "uncollectible": "0.00"}],
    "read": {"items": 1, "rcu": 0.5}}
