"""``package``: units are billed in whole packages; a started package is a whole one.

Plan properties::

    {"package_size": "1000", "package_amount": "5.00"}

``package_size`` > 0 (may be fractional, e.g. "0.5" GB), ``package_amount`` >= 0. The units
are divided by ``package_size`` and rounded UP::

    packages = ceil(quantity / package_size)
    amount   = packages * package_amount

This is Stripe's ``transform_quantity: {divide_by: package_size, round: up}`` on a
per-unit price, and Lago's ``package`` charge model, whose service computes
``ceil((units - free_units) / package_size) * amount``. Lago's ``free_units`` is the
charge-level ``free_units`` here (``plans``): the rating deducts it before pricing, once,
as for every quantity-priced model, so ``quantity`` is already the paid units and this
model never reads ``free_units``. 0 units cost 0. The division is exact (integer quotient +
remainder), never a rounded quotient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import (
    Part,
    Priced,
    PricingContext,
    Usage,
    as_usage,
    plain,
    required_amount,
)
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import CONTEXT

__all__ = ["Package", "PackageParams"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PackageParams:
    package_size: Decimal
    package_amount: Decimal


class Package:
    name = "package"
    additive_only = False

    def parse(self, raw: Mapping[str, Any], path: str) -> PackageParams:
        if not isinstance(raw, Mapping):
            raise InvalidField(path, "must be an object")
        size = required_amount(raw, "package_size", path)
        if size <= 0:
            raise InvalidField(f"{path}.package_size", "must be greater than 0")
        return PackageParams(size, required_amount(raw, "package_amount", path))

    def price(
        self,
        usage: Usage | Decimal,
        params: PackageParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        paid = as_usage(usage).quantity
        if not paid:
            return Priced(_ZERO, None)
        size = params.package_size
        whole = CONTEXT.divide_int(paid, size)
        packages = CONTEXT.add(whole, 1) if CONTEXT.remainder(paid, size) else whole
        amount = CONTEXT.multiply(packages, params.package_amount)
        label = f"{plain(packages)} x package of {plain(size)} ({plain(paid)} units)"
        return Priced(amount, None, (), (Part(label, packages, params.package_amount, amount),))
