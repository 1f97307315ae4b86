"""Rating: usage quantities + plan -> priced invoice lines (pure).

aggregate (meters.quantity) -> price (charges) -> rate (here) -> invoice (invoices).
Each line is rounded once, to the currency's minor unit; totals add rounded lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from meterbill.domain.charges import Part, PricingContext, TierLine, Usage
from meterbill.domain.money import quantize
from meterbill.domain.periods import Period
from meterbill.domain.plans import Plan

ZERO = Decimal(0)


@dataclass(slots=True)  # not frozen: built per charge per period on the rating hot path
class Line:
    kind: str                      # "base_fee" | "usage"
    description: str
    amount: Decimal                # rounded once to the currency's minor unit
    amount_unrounded: Decimal
    meter: str | None = None
    quantity: Decimal | None = None
    unit_amount: Decimal | None = None
    tiers: tuple[TierLine, ...] = ()
    parts: tuple[Part, ...] = ()      # matrix cells, time-of-use windows, percentage components…
    proration: Decimal | None = None  # fraction of the full period billed (base fee)


@dataclass(frozen=True, slots=True)
class Rated:
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    total: Decimal


def proration(period: Period, full: Period) -> Decimal:
    whole = (full.end - full.start).total_seconds()
    part = (period.end - period.start).total_seconds()
    if part >= whole:
        return Decimal(1)
    return Decimal(int(part)) / Decimal(int(whole))


NO_USAGE = Usage(ZERO)


def rate(plan: Plan, usages: Mapping[str, Usage], period: Period, full: Period, ctx: PricingContext) -> Rated:
    """Price one customer's period. ``usages`` maps meter code -> that meter's usage."""
    currency = plan.currency
    lines: list[Line] = []
    if plan.base_fee:
        fraction = proration(period, full)
        raw = plan.base_fee * fraction
        desc = plan.name or plan.code
        lines.append(Line("base_fee", f"{desc} base fee", quantize(raw, currency), raw,
                          proration=None if fraction == 1 else fraction))
    for charge in plan.charges:
        usage = usages.get(charge.meter, NO_USAGE)
        priced = charge.model.price(usage, charge.params, ctx)
        lines.append(Line("usage", charge.display_name or charge.meter,
                          quantize(priced.amount, currency), priced.amount,
                          meter=charge.meter, quantity=usage.quantity, unit_amount=priced.unit_amount,
                          tiers=priced.tiers, parts=priced.parts))
    subtotal = sum((ln.amount for ln in lines), ZERO)
    return Rated(currency, tuple(lines), subtotal, subtotal)
