"""HTTP routes (v1). Each handler: parse -> one service call -> map the result.

The same Router is served by API Gateway (Lambda) and by HttpResolverLocal (uvicorn)."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from meterbill.api import documents, events
from meterbill.api.guards import PathParameter
from meterbill.api.schemas import (INSTANT, BillingRunIn, CreditNoteIn, CustomerIn, DiscountIn, GrantIn, InvoiceActionIn, MeterIn,
                                   PlanIn, SimulationIn, TaxRateIn, dump)
from meterbill.bootstrap import Container
from meterbill.domain.events import NUMBER_RULE
from meterbill.domain.ids import ID_PATTERN, ID_RULE, MAX_ID, check_id
from meterbill.domain.invoices import TRANSITIONS
from meterbill.domain.meters import CODE_PATTERN, CODE_RULE, check_code
from meterbill.domain.instants import parse_instant
from meterbill.domain.invoices import public_view
from meterbill.services.keys import KEY_ID
from meterbill.services.errors import InvalidField, NotFound

log = logging.getLogger(__name__)
router = Router()
HIDDEN = {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "next_close", "closing_through"}


def container() -> Container:
    return router.context["container"]


def _check_index(value: str, name: str) -> None:
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise InvalidField(name, "must be a line number: 0, 1, 2, …")


def _check_key_id(value: str, name: str) -> None:
    if not KEY_ID.fullmatch(value):
        raise InvalidField(name, "must be a key id as listed: 'key_' and 16 hex digits")


def _check_action(value: str, name: str) -> None:
    if value not in TRANSITIONS:
        raise InvalidField(name, f"must be one of: {', '.join(TRANSITIONS)}")


_ID = PathParameter(check_id, {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": ID_PATTERN},
                    "An id: " + ID_RULE.replace("must be ", "") + ". Percent-encode it in the path.")
_CODE = PathParameter(check_code, {"type": "string", "minLength": 1, "maxLength": 64, "pattern": CODE_PATTERN},
                      "A code: " + CODE_RULE.replace("must be ", "") + ".")
# Every path parameter of every route, by name: checked (after percent-decoding) before anything
# else reads it, a 400 naming the parameter otherwise; the same rules are in the OpenAPI document.
PATH_PARAMETERS: dict[str, PathParameter] = {
    "code": PathParameter(_CODE.check, _CODE.schema, _CODE.description, "tokens"),
    "customer_id": PathParameter(check_id, _ID.schema, _ID.description, "acme"),
    "event_id": PathParameter(check_id, _ID.schema, _ID.description, "evt-0001"),
    "invoice_id": PathParameter(check_id, _ID.schema, "An invoice id (in_…), as listed.", documents.INVOICE_ID),
    "note_id": PathParameter(check_id, _ID.schema, "A credit note id (cn_…), as listed.", documents.NOTE_ID),
    "run_id": PathParameter(check_id, _ID.schema, "A billing run id, as POST /v1/billing-runs answered it.",
                            documents.RUN_ID),
    "discount_id": PathParameter(_CODE.check, _CODE.schema, "The discount's code, chosen by you. "
                                 + _CODE.description, "welcome20"),
    "grant_id": PathParameter(_CODE.check, _CODE.schema, "The credit grant's code, chosen by you. "
                              + _CODE.description, "prepaid-2026"),
    "index": PathParameter(_check_index, {"type": "string", "pattern": "^[0-9]{1,9}$"},
                           "0-based index of the invoice line", "1"),
    "action": PathParameter(_check_action, {"type": "string", "enum": list(TRANSITIONS)},
                            "mark-paid, void or mark-uncollectible", "mark-paid"),
    "key_id": PathParameter(_check_key_id, {"type": "string", "pattern": f"^{KEY_ID.pattern}$"},
                            "An API key's public id, as listed (never the key)", "key_0123456789abcdef"),
}


def _check_cursor(value: str, name: str) -> None:
    if not CURSOR.fullmatch(value):
        raise InvalidField(name, "is not a cursor returned by this listing: pass next_cursor unchanged",
                           "invalid_cursor")


def _check_instant(value: str, name: str) -> None:
    if not re.fullmatch(INSTANT[1:-1], value):
        raise InvalidField(name, f"'{value[:40]}' is not an RFC 3339 timestamp such as 2026-10-01T00:00:00Z")


CURSOR = re.compile(r"[A-Za-z0-9_-]{1,2048}={0,2}")
_INSTANT = {"type": "string", "format": "date-time", "pattern": INSTANT}
# Query parameters, by name (the same name means the same thing on every route), checked with the
# path parameters.
QUERY_PARAMETERS: dict[str, PathParameter] = {
    "cursor": PathParameter(_check_cursor, {"type": "string", "pattern": f"^{CURSOR.pattern}$"},
                            "opaque: the next_cursor of the previous page, unchanged; another value is 400"),
    "customer": PathParameter(check_id, _ID.schema, "only this customer's", "acme"),
    "invoice": PathParameter(check_id, _ID.schema, "only this invoice's", documents.INVOICE_ID),
    "meter": PathParameter(_CODE.check, _CODE.schema, "only this meter", "tokens"),
    "from": PathParameter(_check_instant, _INSTANT, "start (RFC 3339), default 30 days before to",
                          "2026-10-01T00:00:00Z"),
    "to": PathParameter(_check_instant, _INSTANT, "end (RFC 3339), default now", "2026-11-01T00:00:00Z"),
}


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: integers -> int, others -> exact string."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in HIDDEN}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in sorted(value)] if isinstance(value, set) else [plain(v) for v in value]
    return value


def page(items: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    return {"data": [plain(i) for i in items], "next_cursor": cursor}


Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query()]
IntegrationName = Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="e.g. stripe")]


@router.get("/v1/health")
def health() -> dict[str, Any]:
    """Liveness, and how far behind aggregation is (cached for a few seconds: public endpoint)."""
    try:
        lag = container().watermark.lag()
    except Exception:  # the API is up even when the stream cannot be read right now
        log.exception("usage watermark unavailable")
        return {"status": "ok", "aggregation": {"status": "unknown"}}
    if lag is None:
        return {"status": "ok", "aggregation": {"status": "caught_up", "lag_s": 0}}
    return {"status": "ok", "aggregation": {"status": "behind", "lag_s": round(lag.age_s, 3),
                                            "oldest_unapplied": lag.oldest_unapplied, "shard": lag.shard}}


# -- meters / plans ------------------------------------------------------------------
@router.put("/v1/meters/<code>")
def put_meter(code: str, body: Annotated[MeterIn, Body()]) -> dict[str, Any]:
    return plain(container().catalog.put_meter(code, dump(body)))


@router.get("/v1/meters/<code>")
def get_meter(code: str) -> dict[str, Any]:
    return plain(container().catalog.get_meter(code))


@router.get("/v1/meters")
def list_meters(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().catalog.list_catalog("METER", limit, cursor))


@router.put("/v1/plans/<code>")
def put_plan(code: str, body: Annotated[PlanIn, Body()]) -> dict[str, Any]:
    return plain(container().catalog.put_plan(code, dump(body)))


@router.get("/v1/plans/<code>")
def get_plan(code: str) -> dict[str, Any]:
    return plain(container().catalog.get_plan_doc(code))


@router.get("/v1/plans")
def list_plans(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().catalog.list_catalog("PLAN", limit, cursor))


@router.put("/v1/tax-rates/<code>")
def put_tax_rate(code: str, body: Annotated[TaxRateIn, Body()]) -> dict[str, Any]:
    return plain(container().catalog.put_tax_rate(code, dump(body)))


@router.get("/v1/tax-rates/<code>")
def get_tax_rate(code: str) -> dict[str, Any]:
    return plain(container().catalog.get_tax_rate(code))


@router.get("/v1/tax-rates")
def list_tax_rates(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().catalog.list_catalog("TAX", limit, cursor))


# -- customers -----------------------------------------------------------------------
@router.put("/v1/customers/<customer_id>",
            description="Create or replace a customer. The id is the one events name as customer: "
                        + ID_RULE.replace("must be ", "") + ".")
def put_customer(customer_id: str, body: Annotated[CustomerIn, Body()]) -> dict[str, Any]:
    return plain(container().catalog.put_customer(customer_id, dump(body)))


@router.get("/v1/customers/<customer_id>")
def get_customer(customer_id: str) -> dict[str, Any]:
    return plain(container().catalog.get_customer(customer_id))


@router.get("/v1/customers")
def list_customers(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().billing_store.list_customers(limit, cursor))


@router.get("/v1/pending-customers",
            description="Customers that sent usage before they were created: their events are kept "
                        "and will be billed once the customer exists.")
def list_pending(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().billing_store.list_pending(limit, cursor))


@router.get("/v1/dead-letters",
            description="Usage the aggregator kept aside because it could never be applied (an undecodable "
                        "stream record, a result DynamoDB cannot store exactly): the event ids and why. "
                        "Alarmed (UsageDeadLettered); nothing here is retried by itself.")
def list_dead_letters(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().billing_store.list_dead_letters(limit, cursor))


@router.get("/v1/customers/<customer_id>/upcoming-invoice",
            description="The running bill for the open period, from the same rating code as the real close.")
def upcoming_invoice(customer_id: str) -> dict[str, Any]:
    return plain(container().billing.upcoming(customer_id))


@router.get("/v1/customers/<customer_id>/usage")
def customer_usage(customer_id: str, from_: Annotated[str | None, Query(alias="from")] = None,
                   to: Cursor = None, meter: Cursor = None,
                   window: Annotated[Literal["hour", "day", "week", "month"],
                                     Query(description="width of each point, aligned in the customer's timezone "
                                                       "(weeks start on Monday, months on the 1st)")] = "day",
                   group_by: Annotated[str | None, Query(
                       max_length=300, description="true: a point per dimension group; or dimension names "
                                                   "(region,model): points merged by them")] = None,
                   compare: Annotated[Literal["previous"] | None, Query(
                       description="previous: also the same number of windows just before, and the change")] = None
                   ) -> dict[str, Any]:
    return container().usage.series(customer_id, from_, to, meter, window, group_by, compare)


@router.put("/v1/customers/<customer_id>/discounts/<discount_id>",
            description="Percentage or fixed; once / repeating N invoices / forever; the whole invoice or one "
                        "meter's charge. Applied before tax when invoices are finalized. Creating the same id "
                        "again with the same terms is harmless; different terms are 409.")
def put_discount(customer_id: str, discount_id: str, body: Annotated[DiscountIn, Body()]) -> dict[str, Any]:
    return plain(container().accounts.put_discount(customer_id, discount_id, dump(body)))


@router.get("/v1/customers/<customer_id>/discounts")
def list_discounts(customer_id: str) -> dict[str, Any]:
    return {"data": plain(container().accounts.list_discounts(customer_id))}


@router.delete("/v1/customers/<customer_id>/discounts/<discount_id>",
               description="End a discount: later invoices no longer get it.")
def end_discount(customer_id: str, discount_id: str) -> dict[str, Any]:
    return plain(container().accounts.end_discount(customer_id, discount_id))


@router.put("/v1/customers/<customer_id>/credit-grants/<grant_id>",
            description="Prepaid credit in the customer's currency, optionally expiring. Drawn by finalized "
                        "invoices (after tax, soonest expiry first) before anything is charged.")
def put_grant(customer_id: str, grant_id: str, body: Annotated[GrantIn, Body()]) -> dict[str, Any]:
    return plain(container().accounts.put_grant(customer_id, grant_id, dump(body)))


@router.get("/v1/customers/<customer_id>/credits", description="Prepaid credit balance and every grant.")
def customer_credits(customer_id: str) -> dict[str, Any]:
    return plain(container().accounts.credits(customer_id))


# -- events --------------------------------------------------------------------------
@router.post("/v1/events",
             description="1 to 1,000 events as {\"events\": [...]}, or CloudEvents "
                         "(application/cloudevents+json, application/cloudevents-batch+json). "
                         "Each event is accepted or rejected on its own; rejected ones are listed "
                         "with index, id, field and problem. 200: all accepted; 207: some rejected; "
                         "422: none accepted. Ids (id, customer): " + ID_RULE.replace("must be ", "") + ". "
                         "Numbers in properties (JSON numbers, and numeric strings a meter aggregates): "
                         + NUMBER_RULE.replace("must be ", "") + "; otherwise properties.<name> is rejected. "
                         "An id is taken by its first payload: the same payload again is a duplicate, "
                         "another payload an id_conflict.")
def post_events() -> tuple[dict[str, Any], int]:
    return events.answer(container().ingest, router.current_event)


@router.get("/v1/events/<event_id>")
def get_event(event_id: str) -> dict[str, Any]:
    found = container().events_store.get(event_id)
    if found is None:
        raise NotFound(f"event '{event_id}' has not been accepted", field="id")
    found["timestamp"] = found["timestamp"].isoformat().replace("+00:00", "Z")
    return plain(found)


# -- billing -------------------------------------------------------------------------
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")


@router.post("/v1/billing-runs",
             description="Start a billing run: 202 with the run at once (status `dispatching`); the run closes every "
                         "customer through the close queue. Follow it with GET /v1/billing-runs/{run_id}. The same "
                         "`Idempotency-Key` header names the same run (no second run on a retried request).")
def billing_run(body: Annotated[BillingRunIn, Body()]) -> tuple[dict[str, Any], int]:
    as_of = parse_instant(body.as_of, "as_of") if body.as_of else None
    key = (router.current_event.headers or {}).get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidField("Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces")
    return plain(container().billing_runs.request(as_of, key)), 202


@router.get("/v1/billing-runs/<run_id>",
            description="A billing run: customers queued / closed / waiting (for usage; given_up: left to a later "
                        "run) / failed, the failures with their reasons, and finished_at once "
                        "queued = closed + failed + given_up.")
def get_billing_run(run_id: str) -> dict[str, Any]:
    return plain(container().billing_runs.view(run_id))


@router.get("/v1/billing-runs")
def list_billing_runs(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().billing_runs.list(limit, cursor))


def invoice_doc(invoice_id: str) -> dict[str, Any]:
    doc = container().billing_store.get_invoice(invoice_id)
    if doc is None:
        raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
    return plain(public_view(doc))


def invoice_document(invoice_id: str, suffix: str) -> dict[str, Any]:
    """Powertools' <invoice_id> also matches dots and the '.' before the suffix is a regex
    wildcard: insist on the exact '<id>.<suffix>' ending."""
    if not unquote(router.current_event.path).endswith(f"/{invoice_id}.{suffix}"):
        raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
    return invoice_doc(invoice_id)


def document_name(doc: dict[str, Any], ext: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", str(doc.get("number") or doc["id"]))
    return f'inline; filename="{stem}.{ext}"'


# The page needs nothing but its inline CSS and its logo (a data: URI or an https URL).
HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; base-uri 'none'; form-action 'none'"


PDF_RESPONSES = {200: {"description": "PDF document",
                        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}}
HTML_RESPONSES = {200: {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}


def pdf_response(doc: dict[str, Any], body: bytes) -> Response:
    return Response(200, "application/pdf", body=body,
                    headers={"Content-Disposition": document_name(doc, "pdf"), "Cache-Control": "private, no-cache"})


def html_response(doc: dict[str, Any], body: str) -> Response:
    return Response(200, "text/html; charset=utf-8", body=body,
                    headers={"Content-Disposition": document_name(doc, "html"), "Cache-Control": "private, no-cache",
                             "Content-Security-Policy": HTML_CSP, "X-Content-Type-Options": "nosniff"})


# The .pdf / .html routes are registered before GET /v1/invoices/<invoice_id>, whose pattern
# would otherwise take "in_….pdf" as an id. No return annotation: the body is not JSON.
@router.get("/v1/invoices/<invoice_id>.pdf", summary="The invoice as a PDF (A4, branded)", responses=PDF_RESPONSES)
def get_invoice_pdf(invoice_id: str):  # type: ignore[no-untyped-def]
    doc = invoice_document(invoice_id, "pdf")
    return pdf_response(doc, container().renderer.pdf(doc))


@router.get("/v1/invoices/<invoice_id>.html", summary="The invoice as a self-contained HTML page",
            responses=HTML_RESPONSES)
def get_invoice_html(invoice_id: str):  # type: ignore[no-untyped-def]
    doc = invoice_document(invoice_id, "html")
    return html_response(doc, container().renderer.html(doc))


@router.get("/v1/invoices/<invoice_id>",
            description="The invoice, with `integrations`: each enabled integration's sync state of it "
                        "(status pending | in_flight | synced | failed | unknown, external id, number, URL, "
                        "error, attempts, updated_at; later actions — void, paid, credit note — under `actions`).")
def get_invoice(invoice_id: str) -> dict[str, Any]:
    doc = invoice_doc(invoice_id)
    doc["integrations"] = plain(container().sync.sync_state(invoice_id))
    return doc


# Three path segments after the id: neither GET .../<invoice_id>(.pdf|.html) nor POST .../<invoice_id>/<action>
# can match it (a path parameter never spans a '/'); tests/integration/test_api.py checks the neighbours.
@router.get("/v1/invoices/<invoice_id>/lines/<index>/usage",
            description="The aggregated usage behind invoice line `index` (0-based): the stored 15-minute buckets "
                        "of its meter over the line's period (value as the meter aggregates, per dimension group), "
                        "a page at a time, and their total, computed by the rating's own roll-up: it equals the "
                        "line's quantity unless usage arrived after the invoice was final.")
def invoice_line_usage(invoice_id: str, index: str, limit: Annotated[int, Query(ge=1, le=1000)] = 500,
                       cursor: Cursor = None) -> dict[str, Any]:
    return container().usage.line_usage(invoice_id, index, limit, cursor)


@router.get("/v1/invoices")
def list_invoices(customer: Cursor = None, limit: Limit = 50, cursor: Cursor = None,
                  collections: Annotated[bool, Query(description="only invoices flagged for collections (the "
                                                                 "dunning ladder ran out), by when")] = False
                  ) -> dict[str, Any]:
    if collections:   # with customer: that customer's, from each page of the collections list
        items, nxt = container().billing_store.in_collections(limit, cursor)
        return page([public_view(i) for i in items if not customer or i["customer_id"] == customer], nxt)
    items, nxt = container().billing_store.list_invoices(customer, limit, cursor)
    return page([public_view(i) for i in items], nxt)


# Registered before POST /v1/invoices/<invoice_id>/<action>, which would take "sync" as an action.
@router.post("/v1/invoices/<invoice_id>/sync",
             description="Send the invoice to the integrations again (all enabled, or `integration=`): a failed "
                         "sync is reopened; a synced one is left alone (the dispatcher looks up before it "
                         "creates, so nothing is pushed twice). 202: queued.")
def sync_invoice(invoice_id: str, integration: IntegrationName = None) -> tuple[dict[str, Any], int]:
    return plain(container().sync.redrive(invoice_id, integration)), 202


@router.post("/v1/invoices/<invoice_id>/<action>",
             description="Lifecycle of a final invoice: mark-paid, void, mark-uncollectible. "
                         "Repeating an action is harmless; an impossible move is 409.")
def invoice_action(invoice_id: str, action: str, body: Annotated[InvoiceActionIn, Body()]) -> dict[str, Any]:
    at = parse_instant(body.at, "at") if body.at else None
    return plain(public_view(container().billing.transition(invoice_id, action, body.reference, at)))


@router.post("/v1/credit-notes",
             description="Credit (part of) a final, paid or uncollectible invoice: tax given back in proportion; "
                         "the unpaid amount is reduced first, the rest becomes the customer's credit balance.")
def create_credit_note(body: Annotated[CreditNoteIn, Body()]) -> tuple[dict[str, Any], int]:
    raw = dump(body)
    invoice, key = raw.pop("invoice"), raw.pop("idempotency_key", None)
    return plain(container().credit_notes.issue(invoice, raw, key)), 201


def credit_note_doc(note_id: str) -> dict[str, Any]:
    found = container().billing_store.get_credit_note(note_id)
    if found is None:
        raise NotFound(f"credit note '{note_id}' does not exist", field="id")
    return plain(found)


def credit_note_document(note_id: str, suffix: str) -> dict[str, Any]:
    """As invoice_document: only the exact '<id>.<suffix>' ending names a credit note."""
    if not unquote(router.current_event.path).endswith(f"/{note_id}.{suffix}"):
        raise NotFound(f"credit note '{note_id}' does not exist", field="id")
    return credit_note_doc(note_id)


# Registered before GET /v1/credit-notes/<note_id> for the same reason as the invoice documents.
@router.get("/v1/credit-notes/<note_id>.pdf", summary="The credit note as a PDF (A4, branded)",
            responses=PDF_RESPONSES)
def get_credit_note_pdf(note_id: str):  # type: ignore[no-untyped-def]
    doc = credit_note_document(note_id, "pdf")
    return pdf_response(doc, container().renderer.credit_note_pdf(doc))


@router.get("/v1/credit-notes/<note_id>.html", summary="The credit note as a self-contained HTML page",
            responses=HTML_RESPONSES)
def get_credit_note_html(note_id: str):  # type: ignore[no-untyped-def]
    doc = credit_note_document(note_id, "html")
    return html_response(doc, container().renderer.credit_note_html(doc))


@router.get("/v1/credit-notes/<note_id>")
def get_credit_note(note_id: str) -> dict[str, Any]:
    return credit_note_doc(note_id)


@router.get("/v1/credit-notes")
def list_credit_notes(invoice: Cursor = None, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().billing_store.list_credit_notes(invoice, limit, cursor))


@router.post("/v1/simulations",
             description="Re-rate customers' past invoiced periods under a candidate plan (same rating code as "
                         "the real close); old vs new pre-tax subtotals. Nothing is stored.")
def simulate(body: Annotated[SimulationIn, Body()]) -> dict[str, Any]:
    return container().billing.simulate(dump(body.plan), body.customers, body.periods)


# -- api keys (admin) ----------------------------------------------------------------------
@router.get("/v1/api-keys",
            description="API keys: id, name, scopes, created_at, expires_at, revoked_at, last_used_at (to the hour) "
                        "and status (active, expired, revoked). Never the secret or its digest. Admin only.")
def list_api_keys(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    items, nxt = container().keys.list_keys(limit, cursor)
    return {"data": items, "next_cursor": nxt}


@router.delete("/v1/api-keys/<key_id>",
               description="Revoke a key by its id. Every API instance refuses it within 5 seconds (this one at "
                           "once). Revoking again is harmless and keeps the first revoked_at. Admin only.")
def revoke_api_key(key_id: str) -> dict[str, Any]:
    return container().keys.revoke(key_id)

# -- data privacy (GDPR / CCPA) ------------------------------------------------------------
from meterbill.api.schemas import EraseIn  # noqa: E402 - kept with its routes (added at the end)


def privacy_caller() -> dict[str, Any]:
    """Who asks, for the audit entry: the API key's id and name. Export and erase need an admin key
    whatever the method (a read key reads each part, but not everything about a person at once)."""
    doc = container().keys.authorize(router.current_event.headers.get("authorization"), "admin")
    # keys created before public ids existed are named by a digest prefix until `meterbill keys migrate`
    return {"key_id": doc.get("id") or f"key_{str(doc.get('digest', ''))[:12]}", "key_name": doc.get("name") or "",
            "via": "api"}


@router.get("/v1/customers/<customer_id>/export",
            description="Everything meterbill holds about a customer (data-privacy access request; admin key): "
                        "profile with plan history, discounts, credit grants, late-usage markers, pending usage, "
                        "invoices, credit notes, a usage summary per meter and month, dead letters and the privacy "
                        "audit trail. Raw events are exported offline (`meterbill privacy sweep --export-events`): "
                        "the events table has no customer index. Audited (who, when).")
def export_customer(customer_id: str) -> dict[str, Any]:
    return plain(container().privacy.export(customer_id, privacy_caller()))


@router.post("/v1/customers/<customer_id>/erase",
             description="Erase a customer's personal data that no law requires to be kept (admin key): e-mail and "
                         "metadata on the profile and on every invoice and credit note; personal values in usage "
                         "(dimension groups, unique_count values) pseudonymised now, in raw events by the next "
                         "`meterbill privacy sweep`. Invoices and credit notes keep the billing name, address and "
                         "tax id as issued (tax law), the profile keeps them for later invoices. Repeating it is "
                         "harmless. Audited (who, when, why). 409 while aggregation is behind: retry.")
def erase_customer(customer_id: str, body: Annotated[EraseIn, Body()]) -> dict[str, Any]:
    return plain(container().privacy.erase(customer_id, privacy_caller(), body.reason))


from meterbill.api import routes_anomalies  # noqa: E402,F401
from meterbill.api import routes_webhooks  # noqa: E402,F401
from meterbill.api import routes_stripe_webhook  # noqa: E402,F401
from meterbill.api import routes_reports  # noqa: E402,F401
from meterbill.api import routes_reconcile  # noqa: E402,F401
from meterbill.api import routes_portal  # noqa: E402,F401
from meterbill.api import routes_collect  # noqa: E402,F401
