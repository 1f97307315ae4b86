"""Rating: usage quantities + plan -> priced invoice lines (pure).

aggregate (meters.quantity) -> price (charges) -> rate (here) -> invoice (invoices).
Each line is rounded once, to the currency's minor unit, in the plan's rounding mode; totals add rounded lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    plan: str | None = None            # the plan that priced it (shown when the period is split)
    override: bool = False             # priced by the customer's contract terms (price_overrides)


@dataclass(frozen=True, slots=True)
class Rated:
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    total: Decimal
    plan: Plan | None = None           # the plan in effect at the end of the rated period
    plans: tuple[Plan, ...] = ()       # every plan whose terms priced a line


def proration(period: Period, full: Period) -> Decimal:
    whole = (full.end - full.start).total_seconds()
    part = (period.end - period.start).total_seconds()
    if part >= whole:
        return Decimal(1)
    return Decimal(int(part)) / Decimal(int(whole))


NO_USAGE = Usage(ZERO)


def _base_fee(plan: Plan, covers: Period, fraction: Decimal, note: str, current: Period, sign: int = 1) -> Line:
    raw = plan.base_fee * fraction * sign
    return Line("base_fee", f"{plan.name or plan.code} base fee{note}", quantize(raw, plan.currency, plan.rounding),
                raw, proration=None if fraction == 1 else fraction, covers=None if covers == current else covers,
                plan=plan.code, override="base_fee" in plan.overridden)


def _usage_line(charge: Charge, usage: Usage, fraction: Decimal, ctx: PricingContext, rounding: str,
                meter_unit: str | None, covers: Period | None, plan_code: str) -> Line:
    free = charge.free_units
    below_zero = usage.quantity < ZERO  # refunds exceed usage: priced as no usage, never as a credit
    priced = charge.model.price(NO_USAGE if below_zero else
                                Usage(max(ZERO, usage.quantity - free), usage.events) if free else usage,
                                charge.params, ctx)
    amount, parts = priced.amount, priced.parts
    if below_zero:  # the line keeps the real net quantity and says why it is not billed
        parts = (*parts, Part(f"net usage {format(usage.quantity, 'f')} is below zero: billed as zero",
                              usage.quantity, None, ZERO))
    if charge.min_amount:  # (without one the minimum is 0, and no amount is below 0)
        minimum = charge.min_amount * fraction
        if amount < minimum:
            parts = (*parts, Part("minimum charge", ZERO, None, minimum - amount))
            amount = minimum
    # positional (about half the cost of keywords, once per line): fields in Line's order
    return Line("usage", charge.display_name or charge.meter, quantize(amount, ctx.currency, rounding), amount,
                charge.meter, usage.quantity, priced.unit_amount, priced.tiers, parts, None, free or None,
                charge.unit or meter_unit, covers, None, plan_code, charge.override)


@dataclass(frozen=True, slots=True)
class Segment:
    """A part ``span`` of the invoiced period rated under one plan, from its own usage only."""

    plan: Plan
    span: Period
    usages: Mapping[str, Usage]


def rate(plan: Plan, usages: Mapping[str, Usage], period: Period, full: Period, ctx: PricingContext, *,
         first: bool = True, next_full: Period | None = None,
         meter_units: Mapping[str, str | None] = MappingProxyType({})) -> Rated:
    """Price one customer's period under one plan. ``usages`` maps meter code -> that meter's usage.

    ``first``: this is the subscription's first invoice; ``next_full``: the following period,
    needed when the base fee is billed in advance; ``meter_units``: meter code -> the meter's
    unit, shown on a line whose charge names none."""
    prepaid = None if first or plan.base_fee_timing != "advance" else plan
    return rate_segments([Segment(plan, period, usages)], full, ctx, first=first, next_full=next_full,
                         prepaid=prepaid, meter_units=meter_units)


def rate_segments(segments: Sequence[Segment], full: Period, ctx: PricingContext, *, first: bool = True,
                  next_full: Period | None = None, prepaid: Plan | None = None,
                  meter_units: Mapping[str, str | None] = MappingProxyType({})) -> Rated:
    """Price one customer's period split at its plan changes: ``segments`` in order, together the
    invoiced period. Each segment's base fee, per-charge minimums and minimum commitment are
    prorated by its length / ``full``'s length, and its usage priced by its own plan.

    ``prepaid``: the plan whose base fee for this period was billed in advance by the previous
    invoice (None: nothing was). A segment under another plan credits that plan's unused fraction
    and charges its own. The plan in effect at the period's end bills ``next_full`` in advance."""
    first_span = segments[0].span
    period = first_span if len(segments) == 1 else Period(first_span.start, segments[-1].span.end, first_span.index)
    currency = segments[0].plan.currency
    lines: list[Line] = []
    subtotal = ZERO
    for i, seg in enumerate(segments):
        plan, seg_lines = seg.plan, []
        fraction = proration(seg.span, full)
        covers = None if seg.span == period else seg.span
        if prepaid is not None and plan != prepaid and prepaid.base_fee:
            seg_lines.append(_base_fee(prepaid, seg.span, fraction, " credit (billed in advance, plan changed)",
                                       period, -1))
        if plan.base_fee:
            if plan.base_fee_timing == "arrears":
                seg_lines.append(_base_fee(plan, seg.span, fraction, "", period))
            elif plan != prepaid:  # this part of the period was not billed in advance under this plan
                note = " (first period)" if first else " (plan change)"
                seg_lines.append(_base_fee(plan, seg.span, fraction, note, period))
            if plan.base_fee_timing == "advance" and i == len(segments) - 1 and next_full is not None:
                seg_lines.append(_base_fee(plan, next_full, Decimal(1), " (next period, in advance)", period))
        usages, rounding, code = seg.usages, plan.rounding, plan.code
        for charge in plan.charges:
            seg_lines.append(_usage_line(charge, usages.get(charge.meter, NO_USAGE), fraction, ctx, rounding,
                                         meter_units.get(charge.meter), covers, code))
        seg_total = sum([ln.amount for ln in seg_lines], ZERO)
        if plan.minimum_commitment:
            commitment = quantize(plan.minimum_commitment * fraction, currency, plan.rounding)
            if seg_total < commitment:
                gap = commitment - seg_total
                seg_lines.append(Line("minimum_commitment", f"minimum commitment true-up (commitment {commitment})",
                                      gap, gap, covers=covers, plan=plan.code,
                                      override="minimum_commitment" in plan.overridden))
                seg_total = commitment
        lines += seg_lines
        subtotal += seg_total
    used = [s.plan for s in segments] + ([prepaid] if prepaid is not None else [])
    return Rated(currency, tuple(lines), subtotal, subtotal, segments[-1].plan,
                 tuple({(p.code, p.version): p for p in used}.values()))
