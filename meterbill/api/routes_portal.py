"""Routes of the customer portal (HTML pages reached by a signed link, no API key) and of spend
budgets (API: portal links, budget, spend check). Registered on the shared router.

Portal pages take the customer from the verified token only: a refused token (tampered, signed for
another deployment, expired) gets the same plain page (403, or 410 when expired), and an invoice
of another customer the same 404 as one that does not exist."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import Field, field_validator

from meterbill.api import documents, openapi
from meterbill.api.guards import PathParameter
from meterbill.api.routes import (HTML_RESPONSES, PATH_PARAMETERS, PDF_RESPONSES, QUERY_PARAMETERS, container,
                                  document_name, plain, router)
from meterbill.api.schemas import Strict, dump
from meterbill.domain.portal_tokens import MAX_TOKEN_CHARS, PortalTokenError
from meterbill.services.errors import InvalidField, NotFound

log = logging.getLogger(__name__)
# A portal page needs its inline CSS and SVG; its one form posts to the portal itself.
PORTAL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; base-uri 'none'; "
              "form-action 'self'; frame-ancestors 'none'")
PORTAL_HEADERS = {"Cache-Control": "private, no-store", "Content-Security-Policy": PORTAL_CSP,
                  "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                  "X-Frame-Options": "DENY"}
MAX_FORM = 2_000


def _check_token(value: str, name: str) -> None:
    # Anything token-shaped reaches the handler, which answers with the portal's own page.
    if len(value) > MAX_TOKEN_CHARS:
        raise InvalidField(name, f"must be at most {MAX_TOKEN_CHARS} characters")


def _check_amount(value: str, name: str) -> None:
    if not (0 < len(value) <= 40 and value.replace(".", "", 1).isascii() and value.replace(".", "", 1).isdigit()):
        raise InvalidField(name, "must be a decimal amount such as 12.50")


PATH_PARAMETERS["token"] = PathParameter(_check_token, {"type": "string", "maxLength": MAX_TOKEN_CHARS},
                                         "a portal token, as the link holds it")
QUERY_PARAMETERS["amount"] = PathParameter(_check_amount, {"type": "string", "maxLength": 40,
                                                          "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                                           "the spend about to be added, in the customer's currency", "12.50")


# -- API: portal links, budgets, spend check --------------------------------------------------------
class PortalLinkIn(Strict):
    days: int | None = Field(default=None, ge=1, le=366, description="valid for this many days (default 7)")


class BudgetIn(Strict):
    amount: str = Field(pattern=r"^\d+(\.\d+)?$", examples=["500.00"],
                        description="spend budget per billing period, in the customer's currency; more than 0")
    thresholds: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(
        default=None, min_length=1, max_length=10, json_schema_extra={"uniqueItems": True},
        description="alert when spend reaches these % of the budget, each once (default 50, 80, 100)")

    @field_validator("thresholds", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any) -> Any:
        # JSON Schema's integer includes 50.0 (Strict converts top-level fields only)
        if isinstance(value, list):
            return [int(v) if type(v) is float and v.is_integer() and abs(v) < 2 ** 53 else v for v in value]
        return value


@router.post("/v1/customers/<customer_id>/portal-links",
             description="A signed link to the customer's portal (HTML: usage, running bill, invoices, credits, "
                         "budget), valid `days` (default 7). It shows this customer only; no API key needed to "
                         "open it. Anyone holding the link can read it: send it to the customer only.")
def create_portal_link(customer_id: str, body: Annotated[PortalLinkIn, Body()]) -> tuple[dict[str, Any], int]:
    return container().portal.link(customer_id, body.days), 201


@router.put("/v1/customers/<customer_id>/budget",
            description="Set the customer's spend budget per billing period and its alert thresholds (% of it). "
                        "Crossing a threshold sends one `budget.threshold_crossed` alert per period, once.")
def put_budget(customer_id: str, body: Annotated[BudgetIn, Body()]) -> dict[str, Any]:
    return plain(container().budgets.put(customer_id, dump(body), "api"))


@router.get("/v1/customers/<customer_id>/budget",
            description="The budget, the running bill it is checked against and this period's alerts.")
def get_budget(customer_id: str) -> dict[str, Any]:
    return plain(container().budgets.view(customer_id))


@router.get("/v1/customers/<customer_id>/spend-check",
            description="Does spending `amount` more keep the customer within budget? Answered from the running "
                        "bill the aggregator keeps current (one read; `age_s`: how old it is; usage is in it "
                        "within the aggregation lag, GET /v1/health). No budget: always within.")
def spend_check(customer_id: str, amount: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    return plain(container().budgets.spend_check(customer_id, amount))


_LINK = {"customer_id": "acme", "path": "/portal/v1.YWNtZQ.1794441600.sig",
         "url": "https://billing.example.com/portal/v1.YWNtZQ.1794441600.sig", "expires_at": "2026-11-12T12:00:00Z"}
_RUNNING = {"period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, "spent": "63.00",
            "currency": "USD", "computed_ms": 1793880000000, "as_of": "2026-11-05T12:00:00Z"}
_BUDGET = {"customer_id": "acme", "amount": "500.00", "currency": "USD", "thresholds": [50, 80, 100],
           "set_by": "api", "updated_at": "2026-11-05T12:00:00Z", "running": _RUNNING, "alerts": []}
_SPEND = {"customer_id": "acme", "currency": "USD", "period": _RUNNING["period"], "spent": "63.00",
          "amount": "12.50", "projected": "75.50", "budget": "500.00", "remaining": "437.00", "within_budget": True,
          "as_of": "2026-11-05T12:00:00Z", "age_s": 0.0}
_S, _D, _I, _B = documents.STRING, documents.DECIMAL, documents.INSTANT, documents.BOOL
documents.SCHEMAS.update({
    "PortalLink": documents.obj({"customer_id": _S, "path": _S, "url": _S, "expires_at": _I}),
    "Budget": documents.obj({"customer_id": _S, "amount": _D, "currency": _S,
                             "thresholds": documents.array(documents.INT), "updated_at": _I,
                             "alerts": documents.array(documents.OBJECT)},
                            {"set_by": _S, "running": documents.OBJECT}),
    "SpendCheck": documents.obj({"customer_id": _S, "currency": _S, "period": documents.PERIOD, "spent": _D,
                                 "amount": _D, "projected": _D, "within_budget": _B, "as_of": _I,
                                 "age_s": {"type": "number"}},
                                {"budget": _D, "remaining": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}}),
})
documents.EXAMPLES.update({"PortalLink": _LINK, "Budget": _BUDGET, "SpendCheck": _SPEND})
openapi.SUCCESS.update({"POST /v1/customers/{customer_id}/portal-links": (201, "PortalLink"),
                        "PUT /v1/customers/{customer_id}/budget": (200, "Budget"),
                        "GET /v1/customers/{customer_id}/budget": (200, "Budget"),
                        "GET /v1/customers/{customer_id}/spend-check": (200, "SpendCheck")})
openapi.REQUESTS.update({"POST /v1/customers/{customer_id}/portal-links": {"days": 7},
                         "PUT /v1/customers/{customer_id}/budget": {"amount": "500.00", "thresholds": [50, 80, 100]}})


# -- the portal (HTML; the token is the authentication) --------------------------------------------
def _page(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, "text/html; charset=utf-8", body=body, headers={**PORTAL_HEADERS, **(headers or {})})


def _refused(status: int) -> Response:
    return _page(status, container().renderer.portal_error(status))


def _customer_of(token: str) -> str | Response:
    try:
        return container().portal.open(token)
    except PortalTokenError as exc:
        log.info("portal link refused: %s", exc.reason)   # never the token itself
        return _refused(exc.status)


def _overview(token: str, customer_id: str, status: int = 200, message: str | None = None,
              error: str | None = None) -> Response:
    c = container()
    path = f"/portal/{quote(token, safe='')}"
    return _page(status, c.renderer.portal(c.portal.overview(customer_id), path, c.portal.form_value(token),
                                           message, error))


@router.get("/portal/<token>", include_in_schema=False)
def portal_page(token: str):  # type: ignore[no-untyped-def]
    customer_id = _customer_of(token)
    return customer_id if isinstance(customer_id, Response) else _overview(token, customer_id)


@router.post("/portal/<token>/budget", include_in_schema=False)
def portal_budget(token: str):  # type: ignore[no-untyped-def]
    customer_id = _customer_of(token)
    if isinstance(customer_id, Response):
        return customer_id
    raw = router.current_event.decoded_body or ""
    if len(raw) > MAX_FORM:
        return _overview(token, customer_id, 413, error="The form was too large.")
    form = dict(parse_qsl(raw, max_num_fields=10))
    try:
        container().portal.set_budget(customer_id, token, form)
    except InvalidField as exc:
        return _overview(token, customer_id, 400, error=f"Budget not saved: {exc.field} {exc.problem}.")
    return _overview(token, customer_id, message="Budget saved.")


def _portal_invoice(token: str, invoice_id: str, suffix: str) -> Response:
    """The customer's own issued invoice as HTML or PDF; anything else the portal's plain page."""
    customer_id = _customer_of(token)
    if isinstance(customer_id, Response):
        return customer_id
    if not router.current_event.path.endswith(f".{suffix}"):
        return _refused(404)
    try:
        doc = container().portal.invoice(customer_id, invoice_id)
    except NotFound:
        return _refused(404)
    renderer = container().renderer
    if suffix == "html":
        return _page(200, renderer.html(doc), {"Content-Disposition": document_name(doc, "html")})
    return Response(200, "application/pdf", body=renderer.pdf(doc),
                    headers={"Content-Disposition": document_name(doc, "pdf"), "Cache-Control": "private, no-store",
                             "X-Content-Type-Options": "nosniff"})


@router.get("/portal/<token>/invoices/<invoice_id>.html", include_in_schema=False, responses=HTML_RESPONSES)
def portal_invoice_html(token: str, invoice_id: str):  # type: ignore[no-untyped-def]
    return _portal_invoice(token, invoice_id, "html")


@router.get("/portal/<token>/invoices/<invoice_id>.pdf", include_in_schema=False, responses=PDF_RESPONSES)
def portal_invoice_pdf(token: str, invoice_id: str):  # type: ignore[no-untyped-def]
    return _portal_invoice(token, invoice_id, "pdf")
