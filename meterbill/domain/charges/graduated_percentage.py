"""``graduated_percentage``: a rate per tier of a summed amount, plus an optional flat fee
per tier (Lago's ``graduated_percentage`` charge model; payment companies charge this way).

Plan properties::

    {"tiers": [{"up_to": "1000", "rate": "1", "flat_amount": "200"},
               {"up_to": "10000", "rate": "2", "flat_amount": "300"},
               {"up_to": null, "rate": "3", "flat_amount": "400"}]}

The tiers are ``graduated``'s (``up_to`` strictly increasing and > 0, only the last
``null``), with ``rate`` -- a percentage: "2" means 2 % -- where ``graduated`` has
``unit_amount``. ``rate`` >= 0 is required; ``flat_amount`` >= 0 is optional (default 0).
Tier ``i`` takes the part of the period's sum in ``(up_to[i-1], up_to[i]]`` and charges
``rate[i]`` % of it, plus its flat fee once as soon as any amount falls in it. So it is
``graduated`` with ``unit_amount = rate / 100`` (exact), and each tier line also reports
its ``rate``.

Lago's worked example (tiers above): a first transaction of $500 costs 500 x 1 % + $200 =
$205; a second of $550 (sum 1,050) costs 500 x 1 % + 50 x 2 % + $300 = $306; a third of
$4,000 (sum 5,050) costs 4,000 x 2 % = $80 -- the differences of this model's amounts at
500, 1,050 and 5,050. Zero usage costs 0: no tier received an amount, so no flat fee (as
``graduated``; lago-api charges the first tier's flat fee at 0). The model needs a summed
amount: a count or sum meter (``additive_only``). Lago's ranges are written 0-1,000,
1,001-10,000; ours are ``(lower, upper]`` over exact decimals, which gives the same
amounts on Lago's example and has no gap between 1,000 and 1,001 for fractional amounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import Priced, PricingContext, Usage
from meterbill.domain.charges.graduated import Graduated, GraduatedParams, parse_tiers

__all__ = ["GraduatedPercentage"]

_GRADUATED = Graduated()


class GraduatedPercentage:
    name = "graduated_percentage"
    additive_only = True

    def parse(self, raw: Mapping[str, Any], path: str) -> GraduatedParams:
        return GraduatedParams(parse_tiers(raw, path, price="rate"))

    def price(
        self,
        usage: Usage | Decimal,
        params: GraduatedParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        return _GRADUATED.price(usage, params, ctx)
