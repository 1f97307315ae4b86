"""A meterbill invoice document as HubSpot CRM properties (pure).

HubSpot is the CRM, not the ledger: an invoice there lets account managers see what was billed
and whether it was paid. Amounts are exact decimal strings in major units (HubSpot's number
properties); every line goes as quantity 1 × its exact amount (HubSpot computes a line's amount
as quantity × price, and meterbill's unit prices can have more decimals than the line), with the
meter, quantity and period in its name. Taxes meterbill computed, discounts and prepaid credits
drawn are their own line items, so the items add up to what meterbill asks: ``total − credits``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.integration.contract import Problem

COMPANY_KEY = "meterbill_customer_id"        # unique custom property on companies
INVOICE_KEY = "meterbill_invoice_id"         # unique custom property on invoices
LINE_KEY = "meterbill_line_id"               # unique custom property on line items
STATUS = "meterbill_payment_status"          # custom: HubSpot's hs_balance_due is read-only
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    name: str
    amount: Decimal


def _qty(value: Any) -> str:
    return format(Decimal(value).normalize(), "f")


def describe(line: Mapping[str, Any]) -> str:
    """``API calls · 12500 calls · 2026-10-01 to 2026-11-01``."""
    parts = [str(line.get("description") or line.get("type") or "line")]
    if line.get("meter") is not None and line.get("quantity") is not None:
        parts.append(f"{_qty(line['quantity'])} {line.get('unit') or line['meter']}")
    p = line.get("period")
    if p:
        parts.append(f"{p['start'][:10]} to {p['end'][:10]}")
    return " · ".join(parts)[:MAX_NAME]


def items(invoice: Mapping[str, Any]) -> list[Item]:
    """Every line item of ``invoice``: lines, taxes (unless inside the prices), discounts and
    credits negative. They add up to ``total − credits_applied``."""
    currency = invoice["currency"]
    found = [Item(f"L{i}", describe(ln), Decimal(ln["amount"])) for i, ln in enumerate(invoice.get("lines") or [])]
    found += [Item(f"D{i}", f"Discount: {d.get('description') or ''}"[:MAX_NAME], -Decimal(d["amount"]))
              for i, d in enumerate(invoice.get("discounts") or [])]
    if not invoice.get("tax_inclusive"):
        found += [Item(f"T{i}", f"{t['name']} {t['percentage']}% on {t['taxable_amount']} {currency}"[:MAX_NAME],
                       Decimal(t["amount"])) for i, t in enumerate(invoice.get("taxes") or [])]
    found += [Item(f"C{i}", f"Prepaid credit applied: {c.get('description') or ''}"[:MAX_NAME], -Decimal(c["amount"]))
              for i, c in enumerate(invoice.get("credits") or [])]
    return found


def amount_due(invoice: Mapping[str, Any]) -> Decimal:
    return Decimal(invoice["total"]) - Decimal(invoice.get("credits_applied") or "0")


def line_properties(invoice: Mapping[str, Any], item: Item) -> dict[str, str]:
    return {"name": item.name, "quantity": "1", "price": format(item.amount, "f"),
            "hs_line_item_currency_code": invoice["currency"], LINE_KEY: f"{invoice['id']}:{item.key}"}


def invoice_properties(invoice: Mapping[str, Any]) -> dict[str, str]:
    """A draft HubSpot invoice: currency, dates, meterbill's id (the unique key) and number."""
    return {"hs_currency": invoice["currency"], "hs_invoice_date": invoice["issued_at"][:10],
            "hs_due_date": invoice["due_at"][:10], INVOICE_KEY: invoice["id"],
            "meterbill_invoice_number": str(invoice["number"]), "meterbill_total": invoice["total"],
            "meterbill_amount_due": format(amount_due(invoice), "f"), STATUS: "open"}


def company_properties(customer: Mapping[str, Any]) -> dict[str, str]:
    return {"name": str(customer.get("name") or customer["id"]), COMPANY_KEY: str(customer["id"])}


def problems(invoice: Mapping[str, Any]) -> list[Problem]:
    if invoice.get("status") == "draft" or not invoice.get("number"):
        return [Problem("status", "only final (numbered) invoices go to HubSpot")]
    found = []
    if not isinstance(invoice.get("currency"), str) or len(invoice["currency"]) != 3:
        found.append(Problem("currency", "must be an ISO 4217 code"))
    if not (invoice.get("customer") or {}).get("email"):
        found.append(Problem("customer.email", "HubSpot opens an invoice only with a contact: the customer "
                                               "needs an e-mail address"))
    return found


def task(invoice: Mapping[str, Any], notice: Mapping[str, Any], marker: str) -> tuple[str, str, str]:
    """(subject, body, priority) of the task a notice becomes."""
    kind = notice.get("kind")
    number, due, currency = invoice.get("number"), invoice.get("due_at", "")[:10], invoice.get("currency")
    owed = f"{format(amount_due(invoice), 'f')} {currency}"
    if kind == "payment_failed":
        subject, priority = f"Payment failed: invoice {number} ({owed})", "HIGH"
    elif kind == "overdue":
        subject, priority = f"Overdue: invoice {number} ({owed}, due {due})", "HIGH"
    else:
        subject, priority = f"Reminder {notice.get('step', '')}: invoice {number} ({owed}, due {due})", "MEDIUM"
    body = f"{notice.get('message') or subject}\n\n{marker}"
    return subject[:MAX_NAME], body, priority
