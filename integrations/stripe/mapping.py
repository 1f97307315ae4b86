"""A meterbill invoice document as Stripe invoice items (pure).

One source of truth for every amount: meterbill. Each invoice line becomes one invoice item with
its exact amount in Stripe's minor units; discounts and prepaid credits drawn become negative items;
taxes as meterbill computed them become one item per tax (``automatic_tax`` stays off and no Stripe
tax rate recomputes anything), except on tax-inclusive invoices, whose line amounts already hold the
tax. The items therefore add up to what meterbill billed: ``total − credits_applied`` (credit notes
issued later are pushed as Stripe credit notes). More than 250 items (Stripe's limit per invoice)
are rolled up per charge: lines of the same kind, meter and description become one item naming
how many lines, the quantity and the period it covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from integrations.stripe import currency as cur
from meterbill.integration.contract import Problem

MAX_ITEMS = 250                                   # Stripe: invoice items per invoice
COLLECTION_METHODS = ("send_invoice", "charge_automatically")


@dataclass(frozen=True, slots=True)
class Item:
    """One Stripe invoice item: ``key`` is stable per invoice (``meterbill_line_id`` metadata),
    so a resumed push finds the items it already added."""

    key: str
    amount: int
    description: str
    period: tuple[int, int] | None = None


def _epoch(iso_text: str) -> int:
    return int(datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp())


def _day(iso_text: str) -> str:
    return iso_text[:10]


def _qty(value: Any) -> str:
    text = format(Decimal(value).normalize(), "f") if value is not None else ""
    return text


def _period(line: Mapping[str, Any]) -> tuple[int, int] | None:
    p = line.get("period")
    return (_epoch(p["start"]), _epoch(p["end"])) if p else None


def describe(line: Mapping[str, Any], lines: int = 1, quantity: Decimal | None = None,
             period: Mapping[str, str] | None = None) -> str:
    """``API calls · 12500 calls · 2026-10-01 to 2026-11-01`` (meter, quantity, period)."""
    parts = [str(line.get("description") or line.get("type") or "line")]
    if lines > 1:
        parts.append(f"{lines} lines")
    qty = quantity if quantity is not None else line.get("quantity")
    if line.get("meter") is not None and qty is not None:
        parts.append(f"{_qty(qty)} {line.get('unit') or line['meter']}")
    p = period or line.get("period")
    if p:
        parts.append(f"{_day(p['start'])} to {_day(p['end'])}")
    return " · ".join(parts)


def _line_items(invoice: Mapping[str, Any], rollup: bool) -> list[Item]:
    currency = invoice["currency"]
    lines: Sequence[Mapping[str, Any]] = invoice.get("lines") or []
    if not rollup:
        return [Item(f"L{i}", cur.to_minor(ln["amount"], currency), describe(ln), _period(ln))
                for i, ln in enumerate(lines)]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, ln in enumerate(lines):
        groups.setdefault((ln.get("type"), ln.get("meter"), ln.get("description")), []).append(i)
    items = []
    for indexes in groups.values():
        first = lines[indexes[0]]
        members = [lines[i] for i in indexes]
        amount = sum((Decimal(m["amount"]) for m in members), Decimal(0))
        qty = (sum((Decimal(m["quantity"]) for m in members), Decimal(0))
               if all(m.get("quantity") is not None for m in members) else None)
        periods = [m["period"] for m in members if m.get("period")]
        span = {"start": min(p["start"] for p in periods), "end": max(p["end"] for p in periods)} if periods else None
        items.append(Item(f"R{indexes[0]}", cur.to_minor(amount, currency),
                          describe(first, len(members), qty, span),
                          (_epoch(span["start"]), _epoch(span["end"])) if span else None))
    return items


def items(invoice: Mapping[str, Any]) -> list[Item]:
    """Every Stripe invoice item for ``invoice``, rolled up per charge when there would be > 250."""
    currency = invoice["currency"]
    extra: list[Item] = []
    for i, d in enumerate(invoice.get("discounts") or []):
        extra.append(Item(f"D{i}", -cur.to_minor(d["amount"], currency), f"Discount: {d.get('description') or ''}"))
    if not invoice.get("tax_inclusive"):
        for i, t in enumerate(invoice.get("taxes") or []):
            extra.append(Item(f"T{i}", cur.to_minor(t["amount"], currency),
                              f"{t['name']} {t['percentage']}% on {t['taxable_amount']} {currency}"))
    for i, c in enumerate(invoice.get("credits") or []):
        extra.append(Item(f"C{i}", -cur.to_minor(c["amount"], currency),
                          f"Prepaid credit applied: {c.get('description') or ''}"))
    lines = _line_items(invoice, rollup=False)
    if len(lines) + len(extra) > MAX_ITEMS:
        lines = _line_items(invoice, rollup=True)
    return lines + extra


def billed(invoice: Mapping[str, Any]) -> int:
    """What the Stripe invoice must total and ask for, in Stripe's minor units: meterbill's total
    less the prepaid credits drawn (``amount_due`` when the invoice was finalized)."""
    currency = invoice["currency"]
    return cur.to_minor(invoice["total"], currency) - cur.to_minor(invoice.get("credits_applied") or "0", currency)


def collection(invoice: Mapping[str, Any], default: str) -> tuple[str, int | None]:
    """(collection_method, days_until_due): the invoice's (the customer's terms, copied at the
    close) or the deployment's default; ``send_invoice`` is due after the payment terms."""
    method = invoice.get("collection_method") or default
    if method not in COLLECTION_METHODS:
        raise ValueError(f"collection_method must be one of {', '.join(COLLECTION_METHODS)}, not {method!r}")
    return method, (int(invoice.get("payment_terms_days", 30)) if method == "send_invoice" else None)


def invoice_problems(invoice: Mapping[str, Any], default_collection: str) -> list[Problem]:
    """Why ``invoice`` cannot become a Stripe invoice (each problem names the field)."""
    if invoice.get("status") == "draft" or not invoice.get("number"):
        return [Problem("status", "only final (numbered) invoices go to Stripe")]
    currency = invoice.get("currency")
    if not isinstance(currency, str):
        return [Problem("currency", "is missing")]
    try:
        cur.exponent(currency)
    except ValueError as exc:
        return [Problem("currency", str(exc))]
    problems: list[Problem] = []
    fields = [(f"lines[{i}].amount", ln["amount"]) for i, ln in enumerate(invoice.get("lines") or [])]
    fields += [(f"{name}[{i}].amount", d["amount"]) for name in ("discounts", "taxes", "credits")
               for i, d in enumerate(invoice.get(name) or [])]
    fields += [("total", invoice.get("total")), ("credits_applied", invoice.get("credits_applied") or "0")]
    for field, value in fields:
        try:
            cur.to_minor(value, currency)
        except (ValueError, ArithmeticError, TypeError) as exc:
            problems.append(Problem(field, str(exc)))
    if problems:
        return problems
    due = Decimal(invoice["total"]) - Decimal(invoice.get("credits_applied") or "0")
    reason = cur.charge_problem(due, currency)
    if reason:
        problems.append(Problem("amount_due", reason))
    try:
        collection(invoice, default_collection)
    except ValueError as exc:
        problems.append(Problem("collection_method", str(exc)))
    found = items(invoice)
    if len(found) > MAX_ITEMS:
        problems.append(Problem("lines", f"{len(found)} Stripe invoice items even rolled up per charge; "
                                         f"Stripe takes at most {MAX_ITEMS}"))
    if sum(i.amount for i in found) != billed(invoice):
        problems.append(Problem("total", "lines, discounts, taxes and credits do not add up to the invoice's "
                                         "total less credits applied"))
    return problems
