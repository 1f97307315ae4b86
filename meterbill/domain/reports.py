"""Reports over stored invoices (pure): usage billed per meter, revenue billed / collected /
outstanding, receivables aging; and the one CSV form of any report.

A report is ``{"columns": [...], "rows": [{column: value}], ...}`` whose values are strings or
integers: money as exact decimal strings quantized to the currency, quantities as plain decimal
strings. Amounts are never added across currencies: every money row carries its ``currency``
and rows are keyed by it.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.money import format_amount

# statuses whose amounts are fixed (committed); drafts may still change, void ones never count
BILLED = frozenset({"finalizing", "final", "paid", "uncollectible"})
OPEN = frozenset({"finalizing", "final"})
AGING_BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "d90_plus")
AGING_LIMITS = ((0, "current"), (30, "d1_30"), (60, "d31_60"), (90, "d61_90"))
REVENUE_AMOUNTS = ("billed", "credits_applied", "credited", "collected", "outstanding", "uncollectible")
GROUPS = ("period", "customer", "plan", "meter", "currency", "segment")
TAG_PREFIX = "tag:"


def dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def check_group(group_by: str, allowed: Iterable[str]) -> str:
    """``segment`` is ``tag:segment``; ``tag:<key>`` groups by any customer tag."""
    allowed = tuple(allowed)
    if group_by == "segment":
        return "tag:segment"
    if group_by.startswith(TAG_PREFIX) and "segment" in allowed and len(group_by) > len(TAG_PREFIX):
        return group_by
    if group_by not in allowed:
        raise InvalidField("group_by", "must be one of: " + ", ".join(allowed)
                           + (", tag:<key>" if "segment" in allowed else ""))
    return group_by


@dataclass(slots=True)
class Totals:
    invoices: int = 0
    amounts: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def revenue_amounts(invoice: Mapping[str, Any]) -> dict[str, Decimal] | None:
    """What one invoice adds to revenue: billed (its total), credits_applied (prepaid credit drawn),
    credited (credit notes), and its amount due as collected (paid), outstanding (open) or
    uncollectible. None for drafts and void invoices."""
    status = invoice.get("status")
    if status not in BILLED:
        return None
    due = dec(invoice.get("amount_due", invoice.get("total")))
    return {"billed": dec(invoice.get("total")), "credits_applied": dec(invoice.get("credits_applied")),
            "credited": dec(invoice.get("credited_total")),
            "collected": due if status == "paid" else Decimal(0),
            "outstanding": due if status in OPEN else Decimal(0),
            "uncollectible": due if status == "uncollectible" else Decimal(0)}


def open_at(invoice: Mapping[str, Any], as_of: datetime, parse: Callable[[str], datetime]) -> bool:
    """Was the invoice a receivable at ``as_of``: issued by then and not yet paid, voided or
    written off (uncollectible) by then. Its amount is today's amount due (credit notes included)."""
    status = invoice.get("status")
    if status not in BILLED and status != "void":
        return False
    if not invoice.get("issued_at") or parse(invoice["issued_at"]) > as_of:
        return False
    for closed in ("paid", "void", "uncollectible"):
        if status == closed:
            at = invoice.get(f"{closed}_at")
            return at is not None and parse(at) > as_of
    return True


def aging_bucket(due_at: datetime, as_of: datetime) -> str:
    """current (not yet due), then whole days overdue: 1–30, 31–60, 61–90, 90+."""
    days = (as_of - due_at).days if as_of > due_at else 0
    if as_of > due_at and days == 0:
        days = 1  # overdue by less than a day is overdue
    for limit, name in AGING_LIMITS:
        if days <= limit:
            return name
    return "d90_plus"


def money_rows(totals: Mapping[tuple[str, str], Totals], group_by: str, names: Iterable[str],
               order: Callable[[tuple[tuple[str, str], Totals]], Any] | None = None) -> list[dict[str, Any]]:
    """One row per (group value, currency), amounts quantized to the currency."""
    names = tuple(names)
    items = sorted(totals.items(), key=order or (lambda kv: kv[0]))
    return [{group_by: key, "currency": cur, "invoices": t.invoices,
             **{n: format_amount(t.amounts[n], cur) for n in names}} for (key, cur), t in items]


def currency_totals(totals: Mapping[tuple[str, str], Totals], names: Iterable[str]) -> list[dict[str, Any]]:
    """The rows summed per currency (never across currencies)."""
    names = tuple(names)
    per: dict[str, Totals] = defaultdict(Totals)
    for (_, cur), t in totals.items():
        per[cur].invoices += t.invoices
        for n in names:
            per[cur].amounts[n] += t.amounts[n]
    return [{"currency": cur, "invoices": t.invoices, **{n: format_amount(t.amounts[n], cur) for n in names}}
            for cur, t in sorted(per.items())]


def to_csv(report: Mapping[str, Any]) -> str:
    """The report's rows as CSV (RFC 4180 quoting, CRLF line ends, a header of its columns);
    money and quantities exactly as in the JSON (decimal strings)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(report["columns"]), extrasaction="ignore")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
