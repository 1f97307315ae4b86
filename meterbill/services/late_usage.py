"""Usage that arrives after its period's invoice is final: no age limit, nothing dropped, nothing
billed twice.

The aggregator leaves a LATE# marker for every invoiced period that receives usage. When the
customer's next invoice is made, each marked period is re-rated with the usage stored now and
the plan versions it was invoiced under. A higher amount becomes an adjustment line on that next
invoice naming the original; a lower one a credit note against the original. The original
records what has been billed for it so far (``rerated_subtotal``), and the marker is removed in
the same transaction, only if no newer late usage arrived meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterbill.domain.adjustments import creditable_before_tax
from meterbill.domain.charges import Part
from meterbill.domain.instants import iso, parse_instant
from meterbill.domain.invoices import invoice_id
from meterbill.domain.money import format_amount, quantize
from meterbill.domain.periods import Period, period_containing
from meterbill.domain.plans import Plan
from meterbill.domain.rating import Line, Rated
from meterbill.ports import BillingStore, Clock, ItemChange
from meterbill.services.catalog import CatalogService
from meterbill.services.credit_notes import CreditNoteService, combine
from meterbill.services.errors import NotFound

log = logging.getLogger(__name__)
MAX_LATE_PER_RUN = 20   # late-usage periods settled per invoice (the rest on the next one)
ZERO = Decimal(0)
Rerated = tuple[dict[str, Any], dict[str, Any], "tuple[Rated, Decimal, list[ItemChange]] | None"]
RatePeriod = Callable[[dict[str, Any], Plan, Period, "Mapping[str, int] | None"], Rated]


class LateUsage:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock, credit_notes: CreditNoteService,
                 rate_period: RatePeriod) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._credit_notes = credit_notes
        self._rate_period = rate_period

    def _periods(self, customer: dict[str, Any], before: Period) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(marker, final invoice) for each invoiced period that received usage after it was final."""
        out = []
        for marker in sorted(self._store.customer_items("late", customer["id"]), key=lambda m: m["sk"]):
            start = parse_instant(marker["sk"][5:], "late period")
            if start >= before.start:
                continue
            original = self._store.get_invoice(invoice_id(customer["id"], Period(start, start, 0)))
            if original is None:
                original = self._first_invoice_by_full_start(customer, start)
            if original is None or original["status"] == "draft":
                log.error("late usage of customer %s for the period starting %s is NOT billed: no final invoice "
                          "has that period start (marker %s kept until it can be settled)",
                          customer["id"], iso(start), marker["sk"])
                continue
            out.append((marker, original))
            if len(out) == MAX_LATE_PER_RUN:
                break
        return out

    def _first_invoice_by_full_start(self, customer: dict[str, Any], start: datetime) -> dict[str, Any] | None:
        """Markers written before 2026-12-01 name a shortened first period by its unclipped start;
        its invoice is keyed by ``started_at``."""
        started = parse_instant(customer["started_at"], "started_at")
        if start >= started:
            return None
        try:
            interval = self._catalog.plan(customer["plan"]).interval
        except NotFound:
            return None
        anchor = parse_instant(customer["billing_anchor"], "billing_anchor")
        if period_containing(anchor, interval, customer["timezone"], started).start != start:
            return None
        return self._store.get_invoice(invoice_id(customer["id"], Period(started, started, 0)))

    def _rerate(self, customer: dict[str, Any], original: dict[str, Any]
                ) -> tuple[Rated, Decimal, list[ItemChange]] | None:
        """Re-rate an invoiced period with the usage stored now and the plan version it was
        invoiced under. Returns the new rating, the difference to what has been billed for it so
        far, and the changes that record it as settled; None if it cannot be re-rated."""
        start = parse_instant(original["period"]["start"], "start")
        end = parse_instant(original["period"]["end"], "end")
        versions = {k: int(v) for k, v in (original.get("plan_versions") or
                                            {original["plan"]: original["plan_version"]}).items()}
        try:
            plan = self._catalog.effective_plan(original["plan"], None, versions[original["plan"]])
            # its own index: the base fee is prorated against this period's full length, not another's
            index = period_containing(parse_instant(customer["billing_anchor"], "billing_anchor"), plan.interval,
                                      customer["timezone"], start).index
            rated = self._rate_period(customer, plan, Period(start, end, index), versions)
        except NotFound:  # a plan version saved before versions were archived: keep the marker, say so
            log.error("late usage for invoice %s cannot be re-rated: plan version not stored", original["id"])
            return None
        billed = Decimal(original.get("rerated_subtotal") or original.get("rated_subtotal") or original["subtotal"])
        settle = [ItemChange("invoice", original["id"], "",
                             {"rerated_subtotal": format_amount(rated.subtotal, plan.currency),
                              "rerated_lines": [{"type": ln.kind, "meter": ln.meter, "description": ln.description,
                                                 "quantity": None if ln.quantity is None else format(ln.quantity, "f"),
                                                 "amount": format_amount(ln.amount, plan.currency)}
                                                for ln in rated.lines],
                              "rerated_at": iso(self._clock())},
                             {"rerated_subtotal": original.get("rerated_subtotal")})]
        return rated, rated.subtotal - billed, settle

    def rerate(self, customer: dict[str, Any], original: dict[str, Any]) -> Rated | None:
        """An invoiced period re-rated from the usage stored now, under the plan versions it was
        invoiced with (None if they are not stored): what reconciliation compares the invoice with."""
        found = self._rerate(customer, original)
        return None if found is None else found[0]

    def _rerated(self, customer: dict[str, Any], before: Period) -> list[Rerated]:
        """Every late period before ``before``: (marker, original, its re-rating; None when the
        original is void or cannot be re-rated)."""
        return [(marker, original, None if original["status"] == "void" else self._rerate(customer, original))
                for marker, original in self._periods(customer, before)]

    def adjustments(self, customer: dict[str, Any], period: Period, rerated: list[Rerated] | None = None
                    ) -> tuple[list[Line], list[ItemChange]]:
        """Positive differences become adjustment lines on this invoice, naming the original.
        ``rerated``: what :meth:`settle_credits` left (so a close re-rates each period once)."""
        lines: list[Line] = []
        changes: list[ItemChange] = []
        for marker, original, found in self._rerated(customer, period) if rerated is None else rerated:
            if found is None:
                continue
            rated, delta, settle = found
            if delta < 0:
                continue  # credited by a credit note before the invoice is committed
            changes += [*settle, ItemChange("late", customer["id"], marker["sk"][5:], None,
                                            {"late_batches": marker["late_batches"]})]
            if delta > 0:
                orig_period = Period(parse_instant(original["period"]["start"], "start"),
                                     parse_instant(original["period"]["end"], "end"), 0)
                number = original.get("number") or original["id"]  # the sequencer may not have numbered it yet
                lines.append(Line("adjustment", f"Late usage for invoice {number} "
                                                f"({original['period']['start'][:10]} to {original['period']['end'][:10]})",
                                  delta, delta, covers=orig_period, parts=_differences(original, rated),
                                  refers_to={"invoice": original["id"], "number": original.get("number")}))
        return lines, changes

    def settle_credits(self, customer: dict[str, Any], before: Period) -> list[Rerated]:
        """Late usage that lowers a final invoice (e.g. a negative sum, a lower 'latest'):
        a credit note against that invoice, and void invoices are settled without billing.
        Returns the other re-ratings, for :meth:`adjustments`."""
        rest: list[Rerated] = []
        for marker, original, found in self._rerated(customer, before):
            settled_marker = ItemChange("late", customer["id"], marker["sk"][5:], None,
                                        {"late_batches": marker["late_batches"]})
            if original["status"] == "void":
                log.warning("late usage for void invoice %s not billed", original["id"])
                self._store.apply_changes([settled_marker])
                continue
            if found is None:
                continue
            rated, delta, settle = found
            if delta >= 0:
                rest.append((marker, original, found))
                continue
            discounted = Decimal(original.get("discount_total") or 0)
            before_discount = Decimal(original["subtotal"])
            credit = -delta
            if discounted and before_discount:   # credit what was actually charged for it
                credit = quantize(credit * (before_discount - discounted) / before_discount, original["currency"])
            credit = min(credit, creditable_before_tax(original))
            if credit <= 0:  # already credited in full: record what could not be credited, settle
                log.warning("late usage lowers invoice %s by %s, but nothing is left to credit", original["id"], -delta)
                uncredited = ItemChange("invoice", original["id"], "", {"late_uncredited": format(-delta, "f")})
                self._store.apply_changes(combine([*settle, uncredited, settled_marker]))
                continue
            parts = [{"label": p.label, "units": format(p.units, "f"), "amount": format(p.amount, "f")}
                     for p in _differences(original, rated)]
            self._credit_notes.issue(original["id"], {"amount": format(credit, "f"), "reason": "late_usage_adjustment",
                                                      "memo": "usage received after the invoice was final",
                                                      "lines": parts},
                                     key=f"late#{marker['sk'][5:]}#{original.get('rerated_subtotal') or ''}",
                                     extra=[*settle, settled_marker])


def _differences(original: dict[str, Any], rated: Rated) -> tuple[Part, ...]:
    """Per line of the period, what changed since it was last billed (as issued, or as last re-rated)."""
    billed = original.get("rerated_lines") or [ln for ln in original["lines"] if ln["type"] != "adjustment"]
    was = {(ln["type"], ln.get("meter"), ln["description"]): (Decimal(ln.get("quantity") or 0), Decimal(ln["amount"]))
           for ln in billed}
    out = []
    for ln in rated.lines:
        qty, amount = was.pop((ln.kind, ln.meter, ln.description), (ZERO, ZERO))
        if ln.amount != amount or (ln.quantity or ZERO) != qty:
            out.append(Part(ln.meter or ln.description, (ln.quantity or ZERO) - qty, None, ln.amount - amount))
    out += [Part(meter or desc, -qty, None, -amount) for (_, meter, desc), (qty, amount) in was.items() if amount]
    return tuple(out)
