"""The OpenAPI document, told truthfully: Powertools generates it from the routes and the pydantic
request models; this module states what Powertools cannot know. Bearer security (Swagger's
"Authorize"), the one error envelope with the statuses each operation really answers (never
Powertools' FastAPI-style 422 ``{detail}``), every path and query parameter's grammar as checked by
guards.py, the body of ``POST /v1/events`` in its three media types, a typed success response, and
request and response examples on every operation.

tests/integration/test_openapi_conformance.py holds the API to it with Schemathesis."""

from __future__ import annotations

import copy
import json
from typing import Any

from meterbill.api.documents import EXAMPLES, INVOICE_ID, SCHEMAS, array, obj, ref
from meterbill.api.guards import CLOUDEVENT, CLOUDEVENTS, JSON, MAX_BODY, MAX_DEPTH, MAX_EVENTS_BODY, PathParameter
from meterbill.domain.events import MAX_BATCH

DESCRIPTION = """Usage-based billing: meters, plans, customers, events, invoices.

**Authentication.** Every operation but `GET /v1/health` takes `Authorization: Bearer <api key>`
(scopes: `ingest` for `POST /v1/events`, `read` for GET, `admin` for everything). Missing or
unknown key: 401 with `WWW-Authenticate: Bearer`; a key without the scope: 403.

**Errors.** Every error is `{"error": {"code", "message", "field"}}`; `field` names what is at fault
(a body field path such as `charges[0].tiers[1].up_to`, a path or query parameter, `body`,
`content-type`) or is null. 400: the request is invalid; 404: a resource it names does not
exist; 405: the method is not one the path takes (`Allow` lists those); 409: it conflicts with the
current state; 413: the body is too large (%(max_body)s bytes; %(max_events)s for events); 415: the
body is not sent as `application/json` (add `-H 'Content-Type: application/json'` to curl);
422 (`POST /v1/events` only): no event of the batch was accepted.

**Bodies** are UTF-8 JSON, nested at most %(depth)s levels. Amounts are decimal strings.

**Ids** (customers, events, invoices, credit notes): 1 to 128 letters or digits of any script,
spaces and `_ - . ~ : @ + = , ; ! * ' ( ) $ &`, no space at either end, not `.` or `..`.
In a path, percent-encode the id (`/v1/customers/caf%%C3%%A9%%20bar`). **Codes** (meters, plans,
tax rates, discounts, credit grants): 1 to 64 of `A-Z a-z 0-9 _ - .`, not `.` or `..`.""" % {
    "max_body": f"{MAX_BODY:,}", "max_events": f"{MAX_EVENTS_BODY:,}", "depth": MAX_DEPTH}

# Operation -> (success status, schema of its answer). PDF/HTML documents keep their own 200.
SUCCESS: dict[str, tuple[int, str | None]] = {
    "GET /v1/health": (200, "Health"),
    "GET /v1/meters": (200, "MeterPage"), "GET /v1/meters/{code}": (200, "Meter"), "PUT /v1/meters/{code}": (200, "Meter"),
    "GET /v1/plans": (200, "PlanPage"), "GET /v1/plans/{code}": (200, "Plan"), "PUT /v1/plans/{code}": (200, "Plan"),
    "GET /v1/tax-rates": (200, "TaxRatePage"), "GET /v1/tax-rates/{code}": (200, "TaxRate"),
    "PUT /v1/tax-rates/{code}": (200, "TaxRate"),
    "GET /v1/customers": (200, "CustomerPage"), "GET /v1/customers/{customer_id}": (200, "Customer"),
    "PUT /v1/customers/{customer_id}": (200, "Customer"),
    "GET /v1/pending-customers": (200, "PendingCustomerPage"), "GET /v1/dead-letters": (200, "DeadLetterPage"),
    "GET /v1/customers/{customer_id}/upcoming-invoice": (200, "Invoice"),
    "GET /v1/customers/{customer_id}/usage": (200, "Usage"),
    "PUT /v1/customers/{customer_id}/discounts/{discount_id}": (200, "Discount"),
    "GET /v1/customers/{customer_id}/discounts": (200, "Discounts"),
    "DELETE /v1/customers/{customer_id}/discounts/{discount_id}": (200, "Discount"),
    "PUT /v1/customers/{customer_id}/credit-grants/{grant_id}": (200, "CreditGrant"),
    "GET /v1/customers/{customer_id}/credits": (200, "Credits"),
    "POST /v1/events": (200, "IngestResult"), "GET /v1/events/{event_id}": (200, "Event"),
    "POST /v1/billing-runs": (202, "BillingRun"), "GET /v1/billing-runs/{run_id}": (200, "BillingRun"),
    "GET /v1/billing-runs": (200, "BillingRunPage"),
    "GET /v1/invoices": (200, "InvoicePage"), "GET /v1/invoices/{invoice_id}": (200, "Invoice"),
    "GET /v1/invoices/{invoice_id}.pdf": (200, None), "GET /v1/invoices/{invoice_id}.html": (200, None),
    "GET /v1/invoices/{invoice_id}/lines/{index}/usage": (200, "LineUsage"),
    "POST /v1/invoices/{invoice_id}/{action}": (200, "Invoice"),
    "POST /v1/invoices/{invoice_id}/sync": (202, "SyncQueued"),
    "POST /v1/credit-notes": (201, "CreditNote"), "GET /v1/credit-notes": (200, "CreditNotePage"),
    "GET /v1/credit-notes/{note_id}": (200, "CreditNote"),
    "GET /v1/credit-notes/{note_id}.pdf": (200, None), "GET /v1/credit-notes/{note_id}.html": (200, None),
    "POST /v1/simulations": (200, "Simulation"),
    "GET /v1/api-keys": (200, "ApiKeyPage"), "DELETE /v1/api-keys/{key_id}": (200, "ApiKey"),
    "GET /v1/customers/{customer_id}/export": (200, "CustomerExport"),
    "POST /v1/customers/{customer_id}/erase": (200, "Erasure"),
    "GET /v1/reports/usage": (200, "Report"), "GET /v1/reports/revenue": (200, "Report"),
    "GET /v1/reports/aging": (200, "Report"),
}
PUBLIC = frozenset({"GET /v1/health"})
# Parameter examples where the one of the parameter's kind (guards.PathParameter.example) names nothing here.
PARAMETER_EXAMPLES = {("/v1/plans/{code}", "code"): "pro", ("/v1/tax-rates/{code}", "code"): "vat-de"}

_EVENT = {"id": "evt-0004", "customer": "acme", "type": "api.call", "timestamp": "2026-10-20T10:00:00Z",
          "properties": {"tokens": 120, "model": "small"}}
_CLOUDEVENT = {"specversion": "1.0", "id": "evt-0005", "source": "/gateway", "type": "api.call", "subject": "acme",
               "time": "2026-10-20T10:00:00Z", "datacontenttype": "application/json", "data": {"tokens": 42}}
_PLAN = {"currency": "USD", "interval": "month", "base_fee": "49.00", "name": "Pro", "charges": [
    {"meter": "tokens", "model": "graduated",
     "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}]},
    {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}]}
REQUESTS: dict[str, Any] = {
    "PUT /v1/meters/{code}": {"event_type": "api.call", "aggregation": "sum", "property": "tokens"},
    "PUT /v1/plans/{code}": _PLAN,
    "PUT /v1/tax-rates/{code}": {"name": "VAT 19%", "percentage": "19", "country": "DE"},
    "PUT /v1/customers/{customer_id}": {"name": "Acme Inc", "email": "billing@acme.example", "plan": "pro",
                                        "metadata": {"crm": "0042"}},
    "PUT /v1/customers/{customer_id}/discounts/{discount_id}": {"type": "percentage", "percentage": "20"},
    "PUT /v1/customers/{customer_id}/credit-grants/{grant_id}": {"amount": "100.00", "reason": "prepaid"},
    "POST /v1/billing-runs": {"as_of": "2026-11-01T00:00:00Z"},
    "POST /v1/invoices/{invoice_id}/{action}": {"reference": "wire 8812"},
    "POST /v1/credit-notes": {"invoice": INVOICE_ID, "amount": "1.00", "reason": "other", "idempotency_key": "seed"},
    "POST /v1/simulations": {"plan": {"currency": "USD", "base_fee": "29.00"}, "customers": ["acme"], "periods": 1},
    "POST /v1/customers/{customer_id}/erase": {"reason": "GDPR request 2026-17"},
}

IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"}, "example": "close-2026-10",
                      "description": "the same key names the same run: a retried request starts no second run"}

_ANY_JSON: dict[str, Any] = {}  # an event is checked on its own: see EventIn and the operation's description
EVENTS_BODY = {
    "required": True,
    "description": "1 to 1,000 events. Each is accepted or rejected on its own (see EventIn / CloudEventIn); "
                   "rejected ones are listed in the answer with index, id, field and problem.",
    "content": {
        JSON: {"schema": obj({"events": {**array(_ANY_JSON), "minItems": 1, "maxItems": MAX_BATCH,
                                         "description": "events, each as EventIn"}}, additionalProperties=False),
               "example": {"events": [_EVENT]}},
        CLOUDEVENT: {"schema": {"type": "object", "description": "one CloudEvent, as CloudEventIn"},
                     "example": _CLOUDEVENT},
        CLOUDEVENTS: {"schema": {**array(_ANY_JSON), "minItems": 1, "maxItems": MAX_BATCH,
                                 "description": "CloudEvents, each as CloudEventIn"}, "example": [_CLOUDEVENT]},
    },
}


def event_schemas(id_schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    name = {"type": "string", "minLength": 1, "maxLength": 128, "description": "printable, no space at either end"}
    value = {"type": ["string", "number", "boolean", "null"], "maxLength": 1024,
             "description": "numbers: finite, |x| < 10^16, at most 10 decimals"}
    return {
        "EventIn": obj({"id": id_schema, "customer": id_schema, "type": name,
                        "timestamp": {"type": "string", "format": "date-time",
                                      "description": "RFC 3339; since 2000, at most 5 minutes ahead"}},
                       {"properties": {"type": "object", "maxProperties": 100, "additionalProperties": value}},
                       additionalProperties=False, examples=[_EVENT]),
        "CloudEventIn": obj({"specversion": {"const": "1.0"}, "id": id_schema, "source": name, "type": name,
                             "subject": {**id_schema, "description": "the customer"},
                             "time": {"type": "string", "format": "date-time"}},
                            {"datacontenttype": {"type": "string"},
                             "data": {"type": "object", "maxProperties": 100, "additionalProperties": value}},
                            examples=[_CLOUDEVENT]),
    }


ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_field", "the request is invalid: `field` names what"),
    401: ("unauthorized", "no API key, or not a known one"),
    403: ("forbidden", "the key lacks the scope this operation needs"),
    404: ("not_found", "a resource the request names does not exist"),
    409: ("conflict", "the request conflicts with the current state"),
    413: ("payload_too_large", "the body is larger than this operation takes"),
    415: ("unsupported_media_type", "the body is not sent as one of the media types this operation takes"),
}


def error_response(status: int) -> dict[str, Any]:
    code, description = ERRORS[status]
    field = {400: "name", 413: "body", 415: "content-type"}.get(status)
    response: dict[str, Any] = {"description": description, "content": {JSON: {
        "schema": ref("Error"), "example": {"error": {"code": code, "message": description, "field": field}}}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "example": "Bearer",
                                                    "description": "Bearer"}}
    return response


def statuses(key: str, op: dict[str, Any]) -> list[int]:
    method, path = key.split(" ", 1)
    codes = set()
    if op.get("parameters") or "requestBody" in op:
        codes.add(400)
    if key not in PUBLIC:
        codes |= {401, 403}
    if "{" in path or "requestBody" in op:
        codes.add(404)
    if "requestBody" in op:
        codes |= {413, 415}
    if method in ("PUT", "POST", "DELETE") and path != "/v1/events":
        codes.add(409)
    return sorted(codes)


def refine(doc: dict[str, Any], parameters: dict[str, PathParameter], queries: dict[str, PathParameter]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["info"]["description"] = DESCRIPTION
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    schemas.update(copy.deepcopy(SCHEMAS))
    schemas.update(event_schemas(parameters["customer_id"].schema))
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                "description": "API key (meterbill keys create)"}}
    doc["security"] = [{"bearer": []}]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            key = f"{method.upper()} {path}"
            _operation(key, path, op, parameters, queries)
    return doc


def _operation(key: str, path: str, op: dict[str, Any], parameters: dict[str, PathParameter],
               queries: dict[str, PathParameter]) -> None:
    if key in PUBLIC:
        op["security"] = []
    for param in op.get("parameters", []):
        rule = (parameters if param["in"] == "path" else queries).get(param["name"])
        if rule is None:
            continue
        default = param["schema"].get("default")
        param["schema"] = dict(rule.schema, **({"default": default} if default is not None else {}))
        param["description"] = rule.description
        example = PARAMETER_EXAMPLES.get((path, param["name"]), rule.example)
        if example:
            param["example"] = example
    if key == "POST /v1/billing-runs":
        op.setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
    if key == "POST /v1/events":
        op["requestBody"] = copy.deepcopy(EVENTS_BODY)
    elif "requestBody" in op and key in REQUESTS:
        op["requestBody"]["content"][JSON]["example"] = REQUESTS[key]
    status, schema = SUCCESS[key]
    responses = op["responses"]
    ok = responses.pop("200")
    responses.pop("422", None)
    if schema is not None:
        other = {media: c for media, c in (ok.get("content") or {}).items() if media != JSON}  # text/csv
        ok = {"description": {200: "OK", 201: "Created", 202: "Accepted"}[status],
              "content": {JSON: {"schema": ref(schema), "example": EXAMPLES[schema]}, **other}}
    responses[str(status)] = ok
    if key == "POST /v1/events":
        result = {"schema": ref("IngestResult"), "example": EXAMPLES["IngestResult"]}
        responses["207"] = {"description": "some events rejected, each listed in errors", "content": {JSON: result}}
        responses["422"] = {"description": "no event accepted, each listed in errors", "content": {JSON: result}}
    for code in statuses(key, op):
        responses[str(code)] = error_response(code)
    op["responses"] = dict(sorted(responses.items()))


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


_SWAGGER: list[tuple[str, str]] = []


def swagger_html(spec: str) -> str:
    """Swagger UI (Powertools' bundled copy, inlined: no CDN) on this document; "Authorize" takes the
    API key and keeps it across reloads."""
    from pathlib import Path

    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    if not _SWAGGER:
        folder = Path(generate_swagger_html.__code__.co_filename).parent
        _SWAGGER.append(((folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
                         (folder / "swagger-ui.min.css").read_text(encoding="utf-8")))
    js, css = _SWAGGER[0]
    return generate_swagger_html(spec.replace("</", "<\\/"), js, css, None, None, True)
