"""Reports across customers, from stored invoices (never raw events, never usage items):

* ``usage``: billed quantities per meter (invoice ``usage`` lines of closed periods), top customers
  or by meter, plan or segment (a customer tag);
* ``revenue``: billed, collected, outstanding per period (the month the billing period starts in,
  in the customer's timezone), plan, segment, customer or currency — always per currency;
* ``aging``: receivables open at a date by days overdue (current, 1–30, 31–60, 61–90, 90+).

Cost: every invoice of the range's customers is read once (one customer's: its range only; all
customers: the whole invoice list, ``gsi2``), plus the customer list when grouping needs it
(period, segment). See docs/decisions.md, "Reports read invoices".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from meterbill.domain import reports as r
from meterbill.domain.instants import iso, parse_instant
from meterbill.ports import Clock, ReportReader
from meterbill.services.errors import InvalidField

DEFAULT_RANGE = timedelta(days=366)
MAX_TOP = 1000
USAGE_GROUPS = ("customer", "meter", "plan", "segment")
REVENUE_GROUPS = ("period", "customer", "plan", "currency", "segment")
AGING_GROUPS = ("currency", "customer", "plan", "segment")


class ReportService:
    def __init__(self, reader: Callable[[], ReportReader], clock: Clock) -> None:
        self._reader = reader  # a fresh reader per report: its rcu is the report's cost
        self._clock = clock

    def usage(self, start: str | None, end: str | None, meter: str | None = None, customer: str | None = None,
              group_by: str = "customer", limit: int = 20) -> dict[str, Any]:
        """Quantities billed per meter over the invoices whose period starts in [from, to).
        Grouped by customer, the top ``limit`` per meter by quantity."""
        group = r.check_group(group_by, USAGE_GROUPS)
        if not 1 <= limit <= MAX_TOP:
            raise InvalidField("limit", f"must be 1 to {MAX_TOP}")
        frm, to = self._range(start, end)
        reader = self._reader()
        customers = self._customers(reader, group)
        qty: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        units: dict[str, str] = {}
        counted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for inv in reader.invoices(customer, iso(frm), iso(to), lines=True):
            if inv.get("status") not in r.BILLED or inv.get("kind") == "threshold":
                continue  # a threshold invoice's usage is billed again (netted) by its period's invoice
            for line in inv.get("lines") or ():
                code = line.get("meter")
                if line.get("type") != "usage" or not code or (meter and code != meter):
                    continue
                key = (_label(group, inv, customers, code), code)
                qty[key] += r.dec(line.get("quantity"))
                units.setdefault(code, line.get("unit") or "")
                counted[key].add(inv["id"])
        order = sorted(qty.items(), key=lambda kv: (kv[0][1], -kv[1], kv[0][0]))
        rows, per_meter = [], defaultdict(int)
        for (label, code), value in order:
            per_meter[code] += 1
            if group == "customer" and per_meter[code] > limit:
                continue
            rows.append({group: label, "meter": code, "unit": units[code], "quantity": format(value, "f"),
                         "invoices": len(counted[(label, code)])})
        return self._report("usage", frm, to, group, [group, "meter", "unit", "quantity", "invoices"], rows,
                            reader, meter=meter, customer=customer)

    def revenue(self, start: str | None, end: str | None, customer: str | None = None,
                group_by: str = "period", currency: str | None = None) -> dict[str, Any]:
        group = r.check_group(group_by, REVENUE_GROUPS)
        frm, to = self._range(start, end)
        reader = self._reader()
        customers = self._customers(reader, group)
        totals: dict[tuple[str, str], r.Totals] = defaultdict(r.Totals)
        for inv in reader.invoices(customer, iso(frm), iso(to)):
            amounts = r.revenue_amounts(inv)
            if amounts is None or (currency and inv.get("currency") != currency):
                continue
            t = totals[(_label(group, inv, customers), inv["currency"])]
            t.invoices += 1
            for name, value in amounts.items():
                t.amounts[name] += value
        # by customer: the top customers first (per currency, by amount billed)
        order = (lambda kv: (kv[0][1], -kv[1].amounts["billed"], kv[0][0])) if group == "customer" else None
        rows = r.money_rows(totals, group, r.REVENUE_AMOUNTS, order)
        return self._report("revenue", frm, to, group, [group, "currency", "invoices", *r.REVENUE_AMOUNTS], rows,
                            reader, customer=customer, totals=r.currency_totals(totals, r.REVENUE_AMOUNTS))

    def aging(self, as_of: str | None, customer: str | None = None, group_by: str = "currency") -> dict[str, Any]:
        """Receivables open at ``as_of`` (default now) by days past their due date."""
        group = r.check_group(group_by, AGING_GROUPS)
        at = parse_instant(as_of, "as_of") if as_of else self._clock()
        reader = self._reader()
        customers = self._customers(reader, group)
        totals: dict[tuple[str, str], r.Totals] = defaultdict(r.Totals)
        names = (*r.AGING_BUCKETS, "total")
        # an invoice is issued when its period ends: periods starting after as_of hold none
        for inv in reader.invoices(customer, "0", iso(at)):
            if not r.open_at(inv, at, _instant):
                continue
            due = r.dec(inv.get("amount_due", inv.get("total")))
            if due <= 0:
                continue
            t = totals[(_label(group, inv, customers), inv["currency"])]
            t.invoices += 1
            t.amounts[r.aging_bucket(_instant(inv["due_at"]), at)] += due
            t.amounts["total"] += due
        rows = r.money_rows(totals, group, names)
        report = self._report("aging", None, None, group, [group, "currency", "invoices", *names], rows, reader,
                              customer=customer, totals=r.currency_totals(totals, names))
        return {**report, "as_of": iso(at)}

    # -- helpers ------------------------------------------------------------------------------
    def _range(self, start: str | None, end: str | None) -> tuple[datetime, datetime]:
        to = parse_instant(end, "to") if end else self._clock()
        frm = parse_instant(start, "from") if start else to - DEFAULT_RANGE
        if frm >= to:
            raise InvalidField("from", "must be before 'to'")
        return frm, to

    @staticmethod
    def _customers(reader: ReportReader, group: str) -> dict[str, dict[str, Any]]:
        """The customer list, read only when the grouping needs a customer's timezone or tags."""
        if group != "period" and not group.startswith(r.TAG_PREFIX):
            return {}
        return {c["id"]: c for c in reader.customers()}

    @staticmethod
    def _report(name: str, frm: datetime | None, to: datetime | None, group: str, columns: list[str],
                rows: list[dict[str, Any]], reader: ReportReader, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"report": name, "group_by": group}
        if frm is not None and to is not None:
            out.update({"from": iso(frm), "to": iso(to)})
        out.update({k: v for k, v in extra.items() if v is not None})
        out.update(columns=list(dict.fromkeys(columns)), rows=rows,
                   read={"items": reader.items, "rcu": round(reader.rcu, 1)})
        return out


def _instant(text: str) -> datetime:
    return parse_instant(text, "date")


def _label(group: str, inv: dict[str, Any], customers: dict[str, dict[str, Any]], meter: str = "") -> str:
    if group == "customer":
        return str(inv["customer_id"])
    if group == "plan":
        return str(inv.get("plan") or "")
    if group == "currency":
        return str(inv["currency"])
    if group == "meter":
        return meter
    profile = customers.get(inv["customer_id"]) or {}
    if group == "period":
        start = _instant(inv["period"]["start"]).astimezone(ZoneInfo(profile.get("timezone") or "UTC"))
        return f"{start.year:04d}-{start.month:02d}"
    return str((profile.get("tags") or {}).get(group[len(r.TAG_PREFIX):]) or "(none)")
