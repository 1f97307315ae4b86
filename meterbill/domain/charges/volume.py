"""``volume``: ALL units are priced at the tier the total falls in (Stripe's
``tiers_mode: volume``, Lago's ``volume`` charge model).

Plan properties: the same ``tiers`` as ``graduated`` (``up_to`` strictly increasing,
the last ``null``; ``unit_amount`` required; ``flat_amount`` optional)::

    {"tiers": [{"up_to": "10000", "unit_amount": "0.001", "flat_amount": "10"},
               {"up_to": null, "unit_amount": "0.0008", "flat_amount": "10"}]}

A total ``q`` falls in tier ``i`` when ``up_to[i-1] < q <= up_to[i]`` (fractions included:
10000.5 falls in the second tier above), and costs ``q * unit_amount[i] + flat_amount[i]``.

The amount is NOT monotone in the quantity: crossing a boundary can lower it (Stripe:
"the total might decrease"; Lago's 10,000 vs 10,001 API calls below cost $20 vs
$18.0008). Zero units cost 0: no tier is reached, so no flat fee either. Stripe's docs
(as stored here) do not say what a volume price with a first-tier ``flat_amount``
charges for 0 units; Lago charges the first tier's flat fee at 0 units since
getlago/lago-api#5760. We keep 0 (as ``graduated`` does) -- a fixed fee belongs in the
plan's base fee.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import Priced, PricingContext, TierLine, Usage, as_usage
from meterbill.domain.charges.graduated import GraduatedTier, parse_tiers
from meterbill.domain.money import CONTEXT

__all__ = ["Volume", "VolumeParams"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class VolumeParams:
    tiers: tuple[GraduatedTier, ...]
    # uppers[i] = up_to of bounded tier i; lowers[i] = the tier's lower bound
    uppers: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)
    lowers: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        uppers = tuple(t.up_to for t in self.tiers if t.up_to is not None)
        object.__setattr__(self, "uppers", uppers)
        object.__setattr__(self, "lowers", (_ZERO, *uppers))


class Volume:
    name = "volume"
    additive_only = False

    def parse(self, raw: Mapping[str, Any], path: str) -> VolumeParams:
        return VolumeParams(parse_tiers(raw, path))

    def price(
        self,
        usage: Usage | Decimal,
        params: VolumeParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        quantity = as_usage(usage).quantity
        if not quantity:
            return Priced(_ZERO, None)
        i = bisect_left(params.uppers, quantity)  # first tier whose up_to >= quantity
        tier = params.tiers[i]
        amount = CONTEXT.add(CONTEXT.multiply(quantity, tier.unit_amount), tier.flat_amount)
        line = TierLine(
            i,
            params.lowers[i],
            tier.up_to,
            quantity,
            tier.unit_amount,
            tier.flat_amount,
            amount,
        )
        return Priced(amount, tier.unit_amount, (line,))
