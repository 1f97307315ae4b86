"""``graduated``: each tier prices the units that fall inside it (as Stripe and Lago).

Plan properties::

    {"tiers": [{"up_to": "1000", "unit_amount": "0.01", "flat_amount": "0"},
               {"up_to": null, "unit_amount": "0.005"}]}

Tier ``i`` covers quantities in ``(up_to[i-1], up_to[i]]`` (the first starts at 0).
``up_to`` is strictly increasing and > 0; only the last tier has ``up_to: null`` and it
must (the schedule is open-ended). ``unit_amount`` >= 0 is required; ``flat_amount``
>= 0 is optional (default 0) and is charged once for a tier as soon as any unit falls
in it (Stripe's graduated ``flat_amount``). Consequently a zero quantity costs 0: no
tier received units, so no flat fee applies either.

Quantities may be fractional (GB-hours): 0.5 units in the first tier are 0.5 units.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import Priced, PricingContext, TierLine, Usage, as_usage
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import CONTEXT, parse_decimal

__all__ = ["Graduated", "GraduatedParams", "GraduatedTier", "parse_tiers"]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_add = CONTEXT.add
_mul = CONTEXT.multiply
_sub = CONTEXT.subtract


@dataclass(frozen=True, slots=True)
class GraduatedTier:
    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal
    rate: Decimal | None = None  # graduated_percentage: the tier's percent (unit_amount = rate / 100)


@dataclass(frozen=True, slots=True)
class GraduatedParams:
    """Validated tiers plus lookup tables pre-computed once, at parse time."""

    tiers: tuple[GraduatedTier, ...]
    # uppers[i] = up_to of bounded tier i (the open last tier is not listed)
    uppers: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)
    lowers: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)
    # full_lines[i] = the TierLine of bounded tier i when completely consumed
    full_lines: tuple[TierLine, ...] = field(init=False, repr=False, compare=False)
    # before[i] = total amount of the full tiers 0..i-1
    before: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lowers: list[Decimal] = []
        full_lines: list[TierLine] = []
        before: list[Decimal] = [_ZERO]
        lower = _ZERO
        for index, tier in enumerate(self.tiers):
            lowers.append(lower)
            if tier.up_to is None:
                break
            units = _sub(tier.up_to, lower)
            amount = _add(_mul(units, tier.unit_amount), tier.flat_amount)
            full_lines.append(
                TierLine(
                    index,
                    lower,
                    tier.up_to,
                    units,
                    tier.unit_amount,
                    tier.flat_amount,
                    amount,
                    tier.rate,
                )
            )
            before.append(_add(before[-1], amount))
            lower = tier.up_to
        object.__setattr__(self, "uppers", tuple(line.upper for line in full_lines))
        object.__setattr__(self, "lowers", tuple(lowers))
        object.__setattr__(self, "full_lines", tuple(full_lines))
        object.__setattr__(self, "before", tuple(before))


def parse_tiers(
    raw: Mapping[str, Any], path: str, price: str = "unit_amount"
) -> tuple[GraduatedTier, ...]:
    """Validate ``raw["tiers"]`` (shared with ``volume``, which has the same shape, and
    ``graduated_percentage``, whose tiers give a ``rate`` in percent instead of a
    ``unit_amount``: ``price="rate"``)."""
    if not isinstance(raw, Mapping):
        raise InvalidField(path, "must be an object")
    raw_tiers = raw.get("tiers")
    tiers_path = f"{path}.tiers"
    if not isinstance(raw_tiers, Sequence) or isinstance(raw_tiers, (str, bytes)):
        raise InvalidField(tiers_path, "must be a non-empty list of tiers")
    if not raw_tiers:
        raise InvalidField(tiers_path, "must contain at least one tier")
    last = len(raw_tiers) - 1
    tiers: list[GraduatedTier] = []
    previous: Decimal | None = None
    for i, raw_tier in enumerate(raw_tiers):
        tiers.append(
            _parse_tier(raw_tier, f"{tiers_path}[{i}]", i == last, previous, price)
        )
        previous = tiers[-1].up_to
    return tuple(tiers)


class Graduated:
    name = "graduated"
    additive_only = False

    def parse(self, raw: Mapping[str, Any], path: str) -> GraduatedParams:
        return GraduatedParams(parse_tiers(raw, path))

    def price(
        self,
        usage: Usage | Decimal,
        params: GraduatedParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        quantity = as_usage(usage).quantity
        if not quantity:
            return Priced(_ZERO, None, ())
        uppers = params.uppers
        i = bisect_left(uppers, quantity)  # first tier whose up_to >= quantity
        if i < len(uppers) and uppers[i] == quantity:  # ends exactly on a boundary
            return Priced(params.before[i + 1], None, params.full_lines[: i + 1])
        tier = params.tiers[i]
        lower = params.lowers[i]
        units = _sub(quantity, lower)
        amount = _add(_mul(units, tier.unit_amount), tier.flat_amount)
        line = TierLine(
            i, lower, tier.up_to, units, tier.unit_amount, tier.flat_amount, amount, tier.rate
        )
        return Priced(
            _add(params.before[i], amount), None, (*params.full_lines[:i], line)
        )


def _parse_tier(
    raw: object, path: str, is_last: bool, previous: Decimal | None, price: str
) -> GraduatedTier:
    if not isinstance(raw, Mapping):
        raise InvalidField(path, "must be an object")
    for key in raw:
        if key not in ("up_to", price, "flat_amount"):
            raise InvalidField(
                f"{path}.{key}",
                f"is not a tier field; expected up_to, {price}, flat_amount",
            )
    if "up_to" not in raw:
        raise InvalidField(
            f"{path}.up_to", "is required (null for the last, open-ended tier)"
        )
    raw_up_to = raw["up_to"]
    up_to: Decimal | None = None
    if is_last:
        if raw_up_to is not None:
            raise InvalidField(
                f"{path}.up_to",
                "must be null: the last tier is open-ended and prices every unit above "
                "the previous tier",
            )
    elif raw_up_to is None:
        raise InvalidField(f"{path}.up_to", "may be null only in the last tier")
    else:
        up_to = parse_decimal(raw_up_to, f"{path}.up_to")
        if up_to <= 0:
            raise InvalidField(f"{path}.up_to", "must be greater than 0")
        if previous is not None and up_to <= previous:
            raise InvalidField(
                f"{path}.up_to",
                f"must be greater than the previous tier's up_to ({previous})",
            )
    if raw.get(price) is None:
        raise InvalidField(f"{path}.{price}", "is required")
    amount = parse_decimal(raw[price], f"{path}.{price}")
    raw_flat = raw.get("flat_amount")
    flat_amount = (
        _ZERO if raw_flat is None else parse_decimal(raw_flat, f"{path}.flat_amount")
    )
    if price == "rate":  # exact: a division by 100
        return GraduatedTier(up_to, CONTEXT.divide(amount, _HUNDRED), flat_amount, amount)
    return GraduatedTier(up_to, amount, flat_amount)
