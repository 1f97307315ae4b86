"""``per_unit``: every unit costs the same, ``amount = quantity * unit_amount``.

Plan properties: ``{"unit_amount": "0.002"}`` (a decimal string, >= 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import Priced, PricingContext, Usage, as_usage
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import CONTEXT, parse_decimal

__all__ = ["PerUnit", "PerUnitParams"]


@dataclass(frozen=True, slots=True)
class PerUnitParams:
    unit_amount: Decimal


class PerUnit:
    name = "per_unit"
    additive_only = False

    def parse(self, raw: Mapping[str, Any], path: str) -> PerUnitParams:
        if not isinstance(raw, Mapping):
            raise InvalidField(path, "must be an object")
        if raw.get("unit_amount") is None:
            raise InvalidField(
                f"{path}.unit_amount", "is required for the per_unit model"
            )
        return PerUnitParams(parse_decimal(raw["unit_amount"], f"{path}.unit_amount"))

    def price(
        self,
        usage: Usage | Decimal,
        params: PerUnitParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        quantity = as_usage(usage).quantity
        unit_amount = params.unit_amount
        return Priced(CONTEXT.multiply(quantity, unit_amount), unit_amount)
