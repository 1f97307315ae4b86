"""Rating: usage quantities + plan -> priced invoice lines (pure).

aggregate (meters.quantity) -> price (charges) -> rate (here) -> invoice (invoices).
Each line is rounded once, to the currency's minor unit, in the plan's rounding mode; totals add rounded lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from meterbill.domain.charges import Part, PricingContext, TierLine, Usage
from meterbill.domain.money import quantize
from meterbill.domain.periods import Period
from meterbill.domain.plans import Charge, Plan

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
    free_units: Decimal | None = None  # allowance deducted before pricing
    unit: str | None = None            # the charge's unit, else its meter's
    covers: Period | None = None       # the service period a line bills, when not the invoice's
    refers_to: dict[str, str] | None = None  # the invoice an adjustment line corrects


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


def _base_fee(plan: Plan, covers: Period, fraction: Decimal, note: str, current: Period) -> Line:
    raw = plan.base_fee * fraction
    amount = quantize(raw, plan.currency, plan.rounding)
    return Line("base_fee", f"{plan.name or plan.code} base fee{note}", amount, raw,
                proration=None if fraction == 1 else fraction, covers=None if covers == current else covers)


def _usage_line(charge: Charge, usage: Usage, fraction: Decimal, ctx: PricingContext, rounding: str,
                meter_unit: str | None) -> Line:
    priced_usage = usage
    if charge.free_units:
        priced_usage = Usage(max(ZERO, usage.quantity - charge.free_units), usage.events)
    priced = charge.model.price(priced_usage, charge.params, ctx)
    amount, parts = priced.amount, priced.parts
    minimum = charge.min_amount * fraction
    if amount < minimum:
        parts = (*parts, Part("minimum charge", ZERO, None, minimum - amount))
        amount = minimum
    return Line("usage", charge.display_name or charge.meter, quantize(amount, ctx.currency, rounding), amount,
                meter=charge.meter, quantity=usage.quantity, unit_amount=priced.unit_amount,
                tiers=priced.tiers, parts=parts, free_units=charge.free_units or None,
                unit=charge.unit or meter_unit)


def rate(plan: Plan, usages: Mapping[str, Usage], period: Period, full: Period, ctx: PricingContext, *,
         first: bool = True, next_full: Period | None = None,
         meter_units: Mapping[str, str | None] = MappingProxyType({})) -> Rated:
    """Price one customer's period. ``usages`` maps meter code -> that meter's usage.

    ``first``: this is the subscription's first invoice; ``next_full``: the following period,
    needed when the base fee is billed in advance; ``meter_units``: meter code -> the meter's
    unit, shown on a line whose charge names none."""
    currency = plan.currency
    fraction = proration(period, full)
    lines: list[Line] = []
    if plan.base_fee:
        if plan.base_fee_timing == "arrears":
            lines.append(_base_fee(plan, period, fraction, "", period))
        else:
            if first:  # nothing billed the first period in advance
                lines.append(_base_fee(plan, period, fraction, " (first period)", period))
            if next_full is not None:
                lines.append(_base_fee(plan, next_full, Decimal(1), " (next period, in advance)", period))
    for charge in plan.charges:
        lines.append(_usage_line(charge, usages.get(charge.meter, NO_USAGE), fraction, ctx, plan.rounding,
                                 meter_units.get(charge.meter)))
    subtotal = sum((ln.amount for ln in lines), ZERO)
    if plan.minimum_commitment:
        commitment = quantize(plan.minimum_commitment * fraction, currency, plan.rounding)
        if subtotal < commitment:
            gap = commitment - subtotal
            lines.append(Line("minimum_commitment", f"minimum commitment true-up (commitment {commitment})",
                              gap, gap))
            subtotal = commitment
    return Rated(currency, tuple(lines), subtotal, subtotal)
