"""Rating: usage quantities + plan -> priced invoice lines (pure).

aggregate (meters.quantity) -> price (charges) -> rate (here) -> invoice (invoices).
Each line is rounded once, to the currency's minor unit; totals add rounded lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from meterbill.domain.charges import TierLine
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


def rate(plan: Plan, quantities: Mapping[str, Decimal], period: Period, full: Period) -> Rated:
    """Price one customer's period. ``quantities`` maps meter code -> aggregated quantity."""
    currency = plan.currency
    lines: list[Line] = []
    if plan.base_fee:
        fraction = proration(period, full)
        raw = plan.base_fee * fraction
        desc = plan.name or plan.code
        lines.append(Line("base_fee", f"{desc} base fee", quantize(raw, currency), raw,
                          proration=None if fraction == 1 else fraction))
    for charge in plan.charges:
        qty = quantities.get(charge.meter, ZERO)
        priced = charge.model.price(qty, charge.params)
        lines.append(Line("usage", charge.display_name or charge.meter,
                          quantize(priced.amount, currency), priced.amount,
                          meter=charge.meter, quantity=qty, unit_amount=priced.unit_amount,
                          tiers=priced.tiers))
    subtotal = sum((ln.amount for ln in lines), ZERO)
    return Rated(currency, tuple(lines), subtotal, subtotal)
