"""Charge models: one model per module behind one protocol, in one explicit registry.

A charge model turns the quantity a meter measured over a period into an UNROUNDED
amount. Rounding to the currency's minor unit happens once, later, per invoice line
(:func:`meterbill.domain.money.quantize`).

Adding a model: write ``charges/<name>.py`` with a class satisfying :class:`ChargeModel`
and add one entry to :data:`REGISTRY` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from meterbill.domain.errors import UnknownChargeModel

__all__ = [
    "REGISTRY",
    "ChargeModel",
    "Priced",
    "TierLine",
    "get_model",
]


@dataclass(frozen=True, slots=True)
class TierLine:
    """The part of a quantity that fell in one tier, bounds ``(lower, upper]`` in units.

    ``amount = units * unit_amount + flat_amount``, unrounded; ``flat_amount`` is only
    charged (and only reported) for a tier that received units.
    """

    index: int
    lower: Decimal
    upper: Decimal | None
    units: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Priced:
    """The price of one quantity under one charge model."""

    amount: Decimal  # UNROUNDED total for the quantity
    unit_amount: Decimal | None  # the single unit price when the model has one
    tiers: tuple[TierLine, ...] = ()


class ChargeModel(Protocol):
    """One pricing rule. Implementations are stateless singletons."""

    name: str

    def parse(self, raw: Mapping[str, Any], path: str) -> Any:
        """Validate this model's properties of one plan charge (``raw`` is the charge
        object; keys belonging to other layers are ignored) and return an immutable
        params object. Raises ``InvalidField`` whose ``field`` starts with ``path``."""
        ...

    def price(self, quantity: Decimal, params: Any) -> Priced:
        """Price ``quantity`` (>= 0, may be fractional); ``ValueError`` if negative."""
        ...


# Imported after the types above: the model modules import them from this package.
from meterbill.domain.charges.graduated import Graduated  # noqa: E402
from meterbill.domain.charges.per_unit import PerUnit  # noqa: E402

REGISTRY: Mapping[str, ChargeModel] = MappingProxyType(
    {
        "per_unit": PerUnit(),
        "graduated": Graduated(),
    }
)


_NAMES = ", ".join(sorted(REGISTRY))


def get_model(name: object, path: str) -> ChargeModel:
    """The model called ``name``, or ``UnknownChargeModel`` at ``{path}.model``."""
    model = REGISTRY.get(name) if isinstance(name, str) else None
    if model is None:
        raise UnknownChargeModel(
            f"{path}.model",
            f"unknown charge model {name!r}; expected one of: {_NAMES}",
        )
    return model
