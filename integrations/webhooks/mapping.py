"""Which event each sink action is, and what its ``data`` holds (pure).

Amounts are strings in major units, exactly as on the invoice (never floats); ids are meterbill's.
The full invoice stays behind ``GET /v1/invoices/{id}``: an event carries the summary a receiver
acts on, so a 250-line invoice never makes a large delivery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACTION_EVENTS = {"push": "invoice.finalized", "void": "invoice.voided", "paid": "invoice.paid",
                 "credit_note": "credit_note.created", "overdue": "invoice.overdue"}
AT_FIELDS = {"push": "numbered_at", "void": "void_at", "paid": "paid_at", "overdue": "overdue_at"}   # when each transition happened
INVOICE_FIELDS = ("id", "number", "status", "customer_id", "currency", "subtotal", "tax_total", "total",
                  "amount_due", "amount_paid", "issued_at", "due_at", "period", "paid_at", "void_at",
                  "payment_url")
NOTE_FIELDS = ("id", "number", "invoice_id", "invoice_number", "customer_id", "currency", "reason", "subtotal",
               "tax_total", "total", "credited_to_invoice", "credited_to_balance", "created_at")


def _pick(doc: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: doc[f] for f in fields if doc.get(f) is not None}


def invoice_data(invoice: Mapping[str, Any]) -> dict[str, Any]:
    return {"invoice": _pick(invoice, INVOICE_FIELDS)}


def credit_note_data(note: Mapping[str, Any]) -> dict[str, Any]:
    return {"credit_note": _pick(note, NOTE_FIELDS)}

