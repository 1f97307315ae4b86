"""Invoices and customers written straight into the billing table (as the stores lay them out,
indexes included), for the report benchmark and tests: thousands in seconds, no API, no close."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from meterbill.adapters.dynamo_codec import to_item
from meterbill.adapters.dynamo_invoices import InvoiceItems
from meterbill.domain.instants import iso
from meterbill.domain.money import format_amount


def invoice_doc(customer_id: str, seq: int, start: datetime, end: datetime, *, plan: str = "pro",
                currency: str = "USD", total: str = "100.00", status: str = "final", terms_days: int = 30,
                paid_at: datetime | None = None, credits_applied: str = "0", credited: str | None = None,
                usage: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A final invoice as the close stores it (amounts, dates, usage lines), numbered ``seq``;
    ``extra``: more fields (``uncollectible_at``, ``void_at``, ``kind``…)."""
    due = Decimal(total) - Decimal(credits_applied) - Decimal(credited or 0)
    doc: dict[str, Any] = {
        "id": f"in_{customer_id}_{iso(start)[:10]}", "number": f"INV-{seq:06d}", "status": status,
        "customer_id": customer_id, "customer": {"id": customer_id, "name": customer_id.title()},
        "plan": plan, "plan_version": 1, "currency": currency,
        "period": {"start": iso(start), "end": iso(end)}, "issued_at": iso(end),
        "due_at": iso(end + timedelta(days=terms_days)), "payment_terms_days": terms_days,
        "lines": [{"type": "usage", "description": meter, "meter": meter, "quantity": qty, "unit": meter,
                   "amount": "0.00", "period": {"start": iso(start), "end": iso(end)}}
                  for meter, qty in (usage or {}).items()],
        "subtotal": total, "total": total, "credits_applied": format_amount(Decimal(credits_applied), currency),
        "amount_due": format_amount(due, currency), "created_at": iso(end)}
    if credited is not None:
        doc["credited_total"] = doc["credited_to_invoice_total"] = format_amount(Decimal(credited), currency)
    if paid_at is not None:
        doc["paid_at"] = iso(paid_at)
    return {**doc, **extra}


def customer_item(customer_id: str, *, plan: str = "pro", currency: str = "USD", timezone: str = "UTC",
                  tags: Mapping[str, str] | None = None, started_at: str = "2025-01-01T00:00:00Z") -> dict[str, Any]:
    """A customer profile as the catalog lists it (``gsi1`` ``CUSTOMERS``)."""
    return {"pk": f"CUS#{customer_id}", "sk": "PROFILE", "gsi1pk": "CUSTOMERS", "gsi1sk": customer_id,
            "id": customer_id, "name": customer_id.title(), "plan": plan, "currency": currency,
            "timezone": timezone, "tags": dict(tags or {}), "started_at": started_at, "billing_anchor": started_at,
            "payment_terms_days": 30, "closed_through": "", "version": 1}


def invoice_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The stored item of invoice ``doc``: keys and index keys as ``InvoiceItems`` writes them."""
    seq = int(str(doc["number"]).rsplit("-", 1)[-1])
    return InvoiceItems._invoice_item(doc, doc["customer_id"], f"{seq:012d}")


def put_items(client: Any, table: str, items: Iterable[Mapping[str, Any]]) -> int:
    """BatchWriteItem, 25 at a time (unprocessed items retried); the number written."""
    batch: list[dict[str, Any]] = []
    n = 0
    for item in items:
        batch.append({"PutRequest": {"Item": to_item(item)}})
        if len(batch) == 25:
            n += _write(client, table, batch)
            batch = []
    return n + (_write(client, table, batch) if batch else 0)


def _write(client: Any, table: str, batch: list[dict[str, Any]]) -> int:
    request = {table: batch}
    while request:
        request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
    return len(batch)
