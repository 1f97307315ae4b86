"""``percentage``: a rate on a summed money property, plus a fixed fee per event, with
optional per-event minimum / maximum (Lago's ``percentage`` charge model).

Plan properties (all decimals >= 0; only ``rate`` is required)::

    {"rate": "2.9", "fixed_amount": "0.30",
     "per_event_min": "0.50", "per_event_max": "5.00",
     "free_units_per_events": "3", "free_units_per_total_aggregation": "500"}

* ``rate`` is a percentage: "2.9" means 2.9 % of the meter's sum.
* ``fixed_amount`` is charged once per event (``usage.events``).
* ``free_units_per_events``: the first N events of the period (by timestamp, then id) carry
  no fee at all: neither the rate on their amounts nor the fixed fee (a whole number). This
  is what lago-api's PercentageService and the page's worked example do (its docs' bullet
  only names the fixed fee). Which events come first is read from ``usage.cells``, the
  usage per 15-minute cell in time order: cells wholly inside the first N are exact. The
  cell where the N-th event falls may hold later events too, and their order inside it is
  not kept; its free events are taken to be its LARGEST values (a meter with
  ``keep_values``), or, without values, its whole amount pays no rate. So the amount is
  never more than the first-N-by-time rule gives, and equal to it whenever the N-th event
  is its cell's last, or the cell's values are equal (docs/decisions.md, 2026-12-01). The
  fixed fee is the same for every event, so N fixed fees are always exactly free.
* ``free_units_per_total_aggregation``: that much of the sum pays no rate. Only alone
  (no ``fixed_amount``, free events or min/max): with those, Lago also frees the fixed
  fee of the events the free amount covers, following events one by one.
* ``per_event_min`` / ``per_event_max`` clamp EACH paying event's fee ``rate% * value +
  fixed`` (Lago's ``per_transaction_min_amount`` / ``_max_amount``); this needs the exact
  per-event values (``usage.values``, from a meter with ``keep_values``): without them
  pricing raises ``ValueError``. Fees are computed once per distinct value. Free events
  are not clamped (they cost 0).

Without min/max the amount is exact from the totals and the free events' amount::

    amount = rate% * max(0, sum - free amount - free events' amount)
             + fixed * max(0, events - free events)

The fixed fee is charged for every paying event, even when the sum is 0 (Lago charges no
fixed fee when the sum is 0); zero usage (no events) costs 0. Parts: the percentage, the
fixed fees, the minimum and the maximum adjustments -- they add up to the amount exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import (
    Part,
    Priced,
    PricingContext,
    Usage,
    as_usage,
    optional_amount,
    plain,
    required_amount,
)
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import CONTEXT

__all__ = ["Percentage", "PercentageParams"]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_add = CONTEXT.add
_mul = CONTEXT.multiply
_sub = CONTEXT.subtract
_ORDER = ("Lago's rule for this follows the events one by one while the running total stays under the free "
          "amount, which usage keeps only per 15-minute bucket")


@dataclass(frozen=True, slots=True)
class PercentageParams:
    rate: Decimal  # percent: 2.9 means 2.9 %
    fixed_amount: Decimal | None = None
    per_event_min: Decimal | None = None
    per_event_max: Decimal | None = None
    free_units_per_events: int = 0
    free_units_per_total_aggregation: Decimal = _ZERO
    fraction: Decimal = field(init=False, repr=False, compare=False)  # rate / 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", CONTEXT.divide(self.rate, _HUNDRED))  # exact: a division by 100


class Percentage:
    name = "percentage"
    additive_only = True

    def parse(self, raw: Mapping[str, Any], path: str) -> PercentageParams:
        if not isinstance(raw, Mapping):
            raise InvalidField(path, "must be an object")
        rate = required_amount(raw, "rate", path)
        fixed = optional_amount(raw, "fixed_amount", path)
        low = optional_amount(raw, "per_event_min", path)
        high = optional_amount(raw, "per_event_max", path)
        if low is not None and high is not None and high < low:
            raise InvalidField(
                f"{path}.per_event_max", f"must be at least per_event_min ({low})"
            )
        free_events = optional_amount(raw, "free_units_per_events", path)
        if free_events is not None and free_events != free_events.to_integral_value():
            raise InvalidField(f"{path}.free_units_per_events", "must be a whole number of events")
        free_total = optional_amount(raw, "free_units_per_total_aggregation", path)
        others = (fixed, low, high, free_events)
        if free_total is not None and any(x is not None for x in others):
            raise InvalidField(
                f"{path}.free_units_per_total_aggregation",
                "can only be used without fixed_amount, free_units_per_events and "
                f"per_event_min/per_event_max: {_ORDER}",
            )
        return PercentageParams(
            rate, fixed, low, high, int(free_events or 0), free_total or _ZERO
        )

    def price(
        self,
        usage: Usage | Decimal,
        params: PercentageParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        usage = as_usage(usage)
        quantity, events = usage.quantity, usage.events
        fraction = params.fraction
        free_n = min(events, params.free_units_per_events)
        clamped = params.per_event_min is not None or params.per_event_max is not None
        free_amount, free_values = _free_events(usage, free_n, clamped) if free_n else (_ZERO, None)
        parts: list[Part] = []
        free_total = params.free_units_per_total_aggregation
        base = max(_ZERO, _sub(_sub(quantity, free_total), free_amount))
        label = f"{plain(params.rate)}% of {plain(base)}"
        if free_total:
            label += f" ({plain(min(quantity, free_total))} free)"
        elif free_n:
            label += f" (first {free_n} events free: {plain(free_amount)})"
        parts.append(Part(label, base, fraction, _mul(base, fraction)))
        if params.fixed_amount is not None:
            paid = events - free_n
            label = f"{plain(params.fixed_amount)} x {paid} events"
            if params.free_units_per_events:
                label += f" ({free_n} free)"
            paid_d = Decimal(paid)
            parts.append(
                Part(label, paid_d, params.fixed_amount, _mul(paid_d, params.fixed_amount))
            )
        if clamped:
            parts.extend(_clamping(usage, params, fraction, free_values))
        amount = _ZERO
        for part in parts:
            amount = _add(amount, part.amount)
        return Priced(amount, None, (), tuple(parts))


def _free_events(
    usage: Usage, free_n: int, with_values: bool
) -> tuple[Decimal, dict[Decimal, int] | None]:
    """The amount of the first ``free_n`` (< or = ``usage.events``) events and, when
    ``with_values``, their values (value -> events), read from the time-ordered cells. In the
    cell where the ``free_n``-th event falls, the free events are its largest values; a cell
    without values frees its whole amount (and cannot give ``with_values``)."""
    if free_n >= usage.events:  # every event is free: no order needed
        values = usage.values
        return usage.quantity, (dict(values) if with_values and values is not None else None)
    amount, taken = _ZERO, ({} if with_values else None)
    remaining = free_n
    for cell in usage.cells:
        if remaining <= 0:
            break
        if cell.events <= 0:
            continue
        if with_values and cell.values is None:
            raise ValueError("percentage per-event min/max needs a meter that keeps per-event values")
        if cell.events <= remaining:  # the whole cell is among the first events
            amount = _add(amount, cell.amount)
            if taken is not None:
                for value, count in cell.values.items():  # type: ignore[union-attr]
                    taken[value] = taken.get(value, 0) + count
            remaining -= cell.events
        elif cell.values is None:  # order inside the cell unknown, values too: free it all
            amount = _add(amount, cell.amount)
            remaining = 0
        else:  # order inside the cell unknown: its largest values are the free ones
            for value in sorted(cell.values, reverse=True):
                n = min(cell.values[value], remaining)
                if n <= 0:
                    break
                amount = _add(amount, _mul(value, n))
                if taken is not None:
                    taken[value] = taken.get(value, 0) + n
                remaining -= n
    if remaining > 0:
        raise ValueError(
            f"percentage free events need the usage per 15-minute cell: {usage.events} events "
            f"but the cells hold only {free_n - remaining} before the free ones end"
        )
    return amount, taken


def _clamping(
    usage: Usage, params: PercentageParams, fraction: Decimal, free: Mapping[Decimal, int] | None
) -> list[Part]:
    """The per-event minimum / maximum adjustments (each paying event's fee clamped; the
    ``free`` events, value -> events, cost nothing and are not clamped)."""
    values = usage.values
    if values is None:
        raise ValueError(
            "percentage per-event min/max needs a meter that keeps per-event values"
        )
    total, events = _ZERO, 0
    for value, count in values.items():
        if not value.is_finite() or value < 0 or count < 0:
            raise ValueError(f"per-event values and counts must be >= 0, got {value}: {count}")
        total = _add(total, _mul(value, count))
        events += count
    if total != usage.quantity or events != usage.events:
        raise ValueError(
            f"per-event values add up to {total} over {events} events, "
            f"but the usage is {usage.quantity} over {usage.events} events"
        )
    fixed = params.fixed_amount or _ZERO
    low, high = params.per_event_min, params.per_event_max
    raised, raised_n, lowered, lowered_n = _ZERO, 0, _ZERO, 0
    for value, count in values.items():
        if free:
            count -= free.get(value, 0)
            if count < 0:
                raise ValueError(f"the free events' value {value} is not in the usage's values")
        fee = _add(_mul(value, fraction), fixed)
        if low is not None and fee < low:
            raised = _add(raised, _mul(_sub(low, fee), count))
            raised_n += count
        elif high is not None and fee > high:
            lowered = _add(lowered, _mul(_sub(high, fee), count))
            lowered_n += count
    parts: list[Part] = []
    if raised_n:
        label = f"per-event minimum {plain(low)} ({raised_n} events)"  # type: ignore[arg-type]
        parts.append(Part(label, Decimal(raised_n), None, raised))
    if lowered_n:
        label = f"per-event maximum {plain(high)} ({lowered_n} events)"  # type: ignore[arg-type]
        parts.append(Part(label, Decimal(lowered_n), None, lowered))
    return parts
