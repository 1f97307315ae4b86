"""``percentage``: a rate on a summed money property, plus a fixed fee per event, with
optional per-event minimum / maximum (Lago's ``percentage`` charge model).

Plan properties (all decimals >= 0; only ``rate`` is required)::

    {"rate": "2.9", "fixed_amount": "0.30",
     "per_event_min": "0.50", "per_event_max": "5.00",
     "free_units_per_events": "3", "free_units_per_total_aggregation": "500"}

* ``rate`` is a percentage: "2.9" means 2.9 % of the meter's sum.
* ``fixed_amount`` is charged once per event (``usage.events``).
* ``free_units_per_events``: that many events pay no fixed fee (a whole number; needs
  ``fixed_amount``). This is Lago's documented meaning ("number of events that are not
  subject to the fixed fee"); Lago's implementation also exempts those first events'
  amounts from the rate, which depends on event ORDER, which a period's usage does not
  keep -- so we do not.
* ``free_units_per_total_aggregation``: that much of the sum pays no rate. Only alone
  (no ``fixed_amount``, free events or min/max): with those, Lago also frees the fixed
  fee of the events the free amount covers, in event order.
* ``per_event_min`` / ``per_event_max`` clamp EACH event's fee ``rate% * value + fixed``
  (Lago's ``per_transaction_min_amount`` / ``_max_amount``); this needs the exact
  per-event values (``usage.values``, from a meter with ``keep_values``): without them
  pricing raises ``ValueError``. Fees are computed once per distinct value.
  Not combinable with free events (which events are free changes how fees are clamped).

Without min/max the amount is exact from the totals::

    amount = rate% * max(0, sum - free amount) + fixed * max(0, events - free events)

The fixed fee is charged for every event, even when the sum is 0 (Lago charges no fixed
fee when the sum is 0); zero usage (no events) costs 0. Parts: the percentage, the fixed
fees, the minimum and the maximum adjustments -- they add up to the amount exactly.
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
_ORDER = "Lago's rule for this depends on event order, which a period's usage does not keep"


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
        if free_events is not None:
            if free_events != free_events.to_integral_value():
                raise InvalidField(
                    f"{path}.free_units_per_events", "must be a whole number of events"
                )
            if fixed is None:
                raise InvalidField(
                    f"{path}.free_units_per_events",
                    "needs fixed_amount: free events are events that pay no fixed fee",
                )
            if low is not None or high is not None:
                raise InvalidField(
                    f"{path}.free_units_per_events",
                    f"cannot be combined with per_event_min/per_event_max: {_ORDER}",
                )
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
        parts: list[Part] = []
        base = max(_ZERO, _sub(quantity, params.free_units_per_total_aggregation))
        label = f"{plain(params.rate)}% of {plain(base)}"
        if params.free_units_per_total_aggregation:
            label += f" ({plain(min(quantity, params.free_units_per_total_aggregation))} free)"
        parts.append(Part(label, base, fraction, _mul(base, fraction)))
        if params.fixed_amount is not None:
            paid = max(0, events - params.free_units_per_events)
            label = f"{plain(params.fixed_amount)} x {paid} events"
            if params.free_units_per_events:
                label += f" ({min(events, params.free_units_per_events)} free)"
            paid_d = Decimal(paid)
            parts.append(
                Part(label, paid_d, params.fixed_amount, _mul(paid_d, params.fixed_amount))
            )
        if params.per_event_min is not None or params.per_event_max is not None:
            parts.extend(_clamping(usage, params, fraction))
        amount = _ZERO
        for part in parts:
            amount = _add(amount, part.amount)
        return Priced(amount, None, (), tuple(parts))


def _clamping(usage: Usage, params: PercentageParams, fraction: Decimal) -> list[Part]:
    """The per-event minimum / maximum adjustments (each event's fee clamped)."""
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
