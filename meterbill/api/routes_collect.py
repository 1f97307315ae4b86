"""HTTP routes of payments and collections (docs/integrations.md, "Payments, terms and dunning"):
record an offline payment on an invoice, list an invoice's payments. The invoice list's
``collections=true`` filter is in routes.py (the list route)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api import documents, openapi
from meterbill.api.documents import DECIMAL, INSTANT, INT, STRING, array, nullable, obj, ref
from meterbill.api.routes import IDEMPOTENCY_KEY, container, plain, router
from meterbill.api.schemas import Strict
from meterbill.services.errors import InvalidField


# The OpenAPI document of these routes (meterbill/api/openapi.py reads these tables).
documents.SCHEMAS["Payment"] = obj(
    {"id": STRING, "invoice_id": STRING, "amount": DECIMAL, "currency": STRING, "date": STRING,
     "source": STRING, "recorded_at": INSTANT, "balance_after": DECIMAL}, {"reference": STRING})
documents.SCHEMAS["PaymentList"] = obj({"data": array(ref("Payment"))})
documents.SCHEMAS["Invoice"]["properties"].update({   # collections: terms, balance, dunning (optional)
    "collection_method": nullable(STRING), "amount_paid": nullable(DECIMAL), "balance_due": nullable(DECIMAL),
    "overdue_at": nullable(INSTANT), "collections_at": nullable(INSTANT), "dunning_step": nullable(INT),
    "dunning": nullable(array(obj({"step": INT, "days_after_due": INT, "at": INSTANT})))})
_PAYMENT = {"id": "pay_0c1d2e3f4a5b6c7d8e9f0a1b", "invoice_id": documents.INVOICE_ID, "amount": "20.00",
            "currency": "USD", "date": "2026-11-20", "reference": "WIRE-2026-1120-0042", "source": "offline",
            "recorded_at": "2026-11-20T09:30:00Z", "balance_after": "42.00"}
documents.EXAMPLES.update({"Payment": _PAYMENT, "PaymentList": {"data": [_PAYMENT]}})
openapi.REQUESTS["POST /v1/invoices/{invoice_id}/payments"] = {"amount": "20.00", "date": "2026-11-20",
                                                              "reference": "WIRE-2026-1120-0042"}
openapi.SUCCESS.update({"POST /v1/invoices/{invoice_id}/payments": (201, "Payment"),
                        "GET /v1/invoices/{invoice_id}/payments": (200, "PaymentList")})


class PaymentIn(Strict):
    amount: str = Field(pattern=r"^\d+(\.\d+)?$", examples=["120.50"],
                        description="in the invoice's currency, a decimal string (at most its minor units)")
    date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-20"],
                             description="when it was paid (YYYY-MM-DD), default today")
    reference: str | None = Field(default=None, min_length=1, max_length=255, examples=["WIRE-2026-1120-0042"],
                                  description="the bank transfer's or cheque's reference: the same reference "
                                              "twice is one payment (required unless an Idempotency-Key is sent)")


@router.post("/v1/invoices/<invoice_id>/payments",
             description="Record a payment made outside the collecting integration (bank transfer, cheque). "
                         "Partial payments leave a balance; the one that brings it to zero marks the invoice paid. "
                         "More than the balance is 400 (`amount`); a draft, void or paid invoice is 409. The same "
                         "`reference` (or `Idempotency-Key` header) twice is one payment (answered again, unchanged). "
                         "Each payment reaches every enabled integration.")
def record_payment(invoice_id: str, body: Annotated[PaymentIn, Body()]) -> tuple[dict[str, Any], int]:
    key = (router.current_event.headers or {}).get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidField("Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces")
    payment, _ = container().payments.record(invoice_id, body.model_dump(exclude_none=True), key)
    return plain(payment), 201   # a repeated reference answers the same payment (as a replay would)


@router.get("/v1/invoices/<invoice_id>/payments",
            description="The invoice's payments, oldest first: offline ones and those an integration collected "
                        "(`source`), each with the balance it left.")
def list_payments(invoice_id: str) -> dict[str, Any]:
    return {"data": [plain(p) for p in container().payments.list(invoice_id)]}


def _ahead_of_actions() -> None:
    """Powertools matches dynamic routes in the order they were registered, and
    ``POST /v1/invoices/<invoice_id>/<action>`` (routes.py) would take "payments" as an action:
    put this module's routes first."""
    mine = {k: v for k, v in router._routes.items() if "/payments" in str(k[0])}
    rest = {k: v for k, v in router._routes.items() if k not in mine}
    router._routes.clear()
    router._routes.update({**mine, **rest})


_ahead_of_actions()
