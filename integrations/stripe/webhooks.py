"""Verified Stripe events → ``PaymentEvent`` (pure, given a way to find a payment's invoice).

Events are matched to meterbill through the Stripe invoice's ``metadata.meterbill_invoice_id``,
never through a Stripe id alone. Invoice events carry the invoice; refunds and disputes carry a
charge / dispute whose ``invoice`` field Stripe removed (API 2025-03-31.basil), so they are mapped
through the invoice's payments (``invoice_for_payment_intent``, a re-fetch the plugin makes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from integrations.stripe import currency as cur
from meterbill.integration.contract import Ignored, PaymentEvent

META_KEY = "meterbill_invoice_id"

# event type -> (payment status it implies | None, flag)
INVOICE_EVENTS: Mapping[str, tuple[str | None, str | None]] = {
    "invoice.finalized": ("open", None),
    "invoice.paid": ("paid", None),
    "invoice.payment_failed": ("payment_failed", None),
    "invoice.payment_action_required": ("action_required", None),
    "invoice.marked_uncollectible": ("uncollectible", None),
    "invoice.voided": ("void", None),
    "invoice.finalization_failed": (None, "finalization_failed"),
}
PAYMENT_EVENTS: Mapping[str, str] = {
    "charge.refunded": "refund",
    "charge.dispute.created": "dispute_opened",
    "charge.dispute.closed": "dispute_closed",
}
STATUS = {"open": "open", "paid": "paid", "void": "void", "uncollectible": "uncollectible"}  # draft → None

InvoiceFinder = Callable[[str], Mapping[str, Any] | None]


def _at(epoch: Any) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meterbill_id(invoice: Mapping[str, Any] | None) -> str | None:
    meta = (invoice or {}).get("metadata") or {}
    value = meta.get(META_KEY)
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    """An expandable field: an id or the expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) else None


def to_payment_event(event: Mapping[str, Any], invoice_for_payment_intent: InvoiceFinder) -> PaymentEvent | Ignored:
    event_id, kind = str(event.get("id")), str(event.get("type"))
    obj: Mapping[str, Any] = (event.get("data") or {}).get("object") or {}
    occurred = _at(event.get("created") or 0)
    if kind in INVOICE_EVENTS:
        status, flag = INVOICE_EVENTS[kind]
        meterbill_id = _meterbill_id(obj)
        if meterbill_id is None:
            return Ignored(event_id, kind, f"Stripe invoice {obj.get('id')} has no {META_KEY}: not meterbill's")
        currency = str(obj.get("currency") or "").upper()
        amount = obj.get("amount_paid") if kind == "invoice.paid" else obj.get("amount_due")
        error = obj.get("last_finalization_error") or {}
        return PaymentEvent(event_id, kind, meterbill_id, status, occurred, external_id=_id(obj.get("id")),
                            amount=cur.from_minor(int(amount), currency) if amount is not None and currency else None,
                            currency=currency or None, flag=flag,
                            detail=error.get("message") if isinstance(error, Mapping) else None)
    if kind in PAYMENT_EVENTS:
        intent = _id(obj.get("payment_intent"))
        invoice = invoice_for_payment_intent(intent) if intent else None
        meterbill_id = _meterbill_id(invoice)
        if invoice is None or meterbill_id is None:
            return Ignored(event_id, kind, "the payment belongs to no meterbill invoice")
        currency = str(obj.get("currency") or "").upper()
        amount = obj.get("amount_refunded") if kind == "charge.refunded" else obj.get("amount")
        detail = obj.get("status") if kind.startswith("charge.dispute") else None
        return PaymentEvent(event_id, kind, meterbill_id, None, occurred, external_id=_id(invoice.get("id")),
                            amount=cur.from_minor(int(amount), currency) if amount is not None and currency else None,
                            currency=currency or None, flag=PAYMENT_EVENTS[kind], detail=detail)
    return Ignored(event_id, kind, "event type not handled")
