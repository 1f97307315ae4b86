"""Charge models: one model per module behind one protocol, in one explicit registry.

A charge model turns what a meter measured over a period (:class:`Usage`) into an
UNROUNDED amount. Rounding to the currency's minor unit happens once, later, per
invoice line (:func:`meterbill.domain.money.quantize`).

Adding a model: write ``charges/<name>.py`` with a class satisfying :class:`ChargeModel`
and add one entry to :data:`REGISTRY` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from meterbill.domain.errors import InvalidField, UnknownChargeModel
from meterbill.domain.money import parse_decimal

__all__ = [
    "REGISTRY",
    "Cell",
    "ChargeModel",
    "GroupKey",
    "Part",
    "Priced",
    "PricingContext",
    "TierLine",
    "Usage",
    "as_usage",
    "check_keys",
    "check_quantity",
    "get_model",
    "optional_amount",
    "plain",
    "required_amount",
]

#: A dimension group: ``((dimension, value), ...)`` in the meter's ``group_by`` order;
#: value ``None`` means the property was absent on the event.
GroupKey = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Cell:
    """One 15-minute bucket of an additive meter's usage, all dimension groups together."""

    start: int  # bucket start, epoch seconds UTC
    events: int
    amount: Decimal  # the meter's aggregate in the cell (its sum, or its count)
    values: Mapping[Decimal, int] | None = None  # keep_values meters: value -> number of events


@dataclass(frozen=True, slots=True)
class Usage:
    """What one charge may price: one meter's usage over one period."""

    quantity: Decimal  # the meter's aggregate over the period (all groups)
    events: int = 0  # number of events behind it
    # aggregate per dimension group (see GroupKey)
    groups: Mapping[GroupKey, Decimal] = field(default_factory=dict)
    # (bucket start in epoch seconds UTC, aggregate in that 15-minute bucket), sorted;
    # only for additive aggregations (count, sum)
    buckets: tuple[tuple[int, Decimal], ...] = ()
    # exact multiset of per-event values (value -> number of events) when the meter
    # keeps them, else None
    values: Mapping[Decimal, int] | None = None
    # additive meters: the usage per 15-minute cell in time order (re-iterable; the roll-up
    # builds it only when iterated, so only the charges that read it pay for it)
    cells: Iterable[Cell] = field(default=(), compare=False, repr=False)

    @staticmethod
    def of(quantity: Decimal, events: int = 0) -> Usage:
        return Usage(quantity, events)


@dataclass(frozen=True, slots=True)
class PricingContext:
    currency: str  # ISO 4217
    timezone: str  # IANA zone for local-time rules (the customer's unless the charge sets its own)


@dataclass(frozen=True, slots=True)
class TierLine:
    """The part of a quantity that fell in one tier, bounds ``(lower, upper]`` in units.

    ``amount = units * unit_amount + flat_amount``, unrounded; ``flat_amount`` is only
    charged (and only reported) for a tier that received units. (``volume`` reports
    one line: the tier the total fell in, carrying ALL units.)
    """

    index: int
    lower: Decimal
    upper: Decimal | None
    units: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal
    rate: Decimal | None = None  # graduated_percentage: percent, unit_amount = rate / 100


@dataclass(frozen=True, slots=True)
class Part:
    """One row of a non-tier breakdown (matrix cell, time-of-use window, percentage
    component, packages). ``amount`` is UNROUNDED; the parts of a price add up to it."""

    label: str  # e.g. "region=eu, instance=m5", "peak (Mon-Fri 08:00-20:00)"
    units: Decimal
    unit_amount: Decimal | None
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Priced:
    """The price of one usage under one charge model."""

    amount: Decimal  # UNROUNDED total
    unit_amount: Decimal | None  # the single unit price when the model has one
    tiers: tuple[TierLine, ...] = ()
    parts: tuple[Part, ...] = ()


class ChargeModel(Protocol):
    """One pricing rule. Implementations are stateless singletons."""

    name: str
    #: True when the model needs an additive aggregation (count/sum), e.g. time_of_use
    #: and percentage; the catalog rejects such a model over a 'max' meter.
    additive_only: bool

    def parse(self, raw: Mapping[str, Any], path: str) -> Any:
        """Validate this model's properties of one plan charge (``raw`` is the charge
        object; keys belonging to other layers are ignored) and return an immutable
        params object. Raises ``InvalidField`` whose ``field`` starts with ``path``."""
        ...

    def price(
        self, usage: Usage | Decimal, params: Any, ctx: PricingContext | None = None
    ) -> Priced:
        """Price ``usage`` (quantity >= 0, may be fractional); ``ValueError`` if the
        usage is negative or lacks what the model needs.

        TRANSITION: a bare ``Decimal`` is accepted as ``Usage.of(usage)`` and ``ctx``
        may be None until rating passes ``Usage`` and ``PricingContext``."""
        ...


def check_quantity(quantity: Decimal) -> None:
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"quantity must be a finite number >= 0, got {quantity}")


def as_usage(usage: Usage | Decimal) -> Usage:
    """``usage`` as a checked :class:`Usage` (TRANSITION: a bare Decimal is wrapped)."""
    if isinstance(usage, Decimal):
        usage = Usage(usage)
    quantity = usage.quantity
    if not quantity.is_finite() or (quantity.is_signed() and quantity):  # = check_quantity, cheaper
        check_quantity(quantity)
    if usage.events < 0:
        raise ValueError(f"events must be >= 0, got {usage.events}")
    return usage


def plain(value: Decimal) -> str:
    """A decimal for a label: plain digits, never an exponent (``1E+3`` -> ``1000``)."""
    return format(value, "f")


def required_amount(raw: Mapping[str, Any], key: str, path: str) -> Decimal:
    """``raw[key]`` as a decimal >= 0; ``InvalidField`` at ``{path}.{key}``."""
    if raw.get(key) is None:
        raise InvalidField(f"{path}.{key}", "is required")
    return parse_decimal(raw[key], f"{path}.{key}")


def optional_amount(raw: Mapping[str, Any], key: str, path: str) -> Decimal | None:
    """``raw[key]`` as a decimal >= 0, or None when absent or null."""
    value = raw.get(key)
    return None if value is None else parse_decimal(value, f"{path}.{key}")


def check_keys(raw: object, allowed: frozenset[str], path: str, what: str) -> Mapping[str, Any]:
    """``raw`` as an object whose keys are all in ``allowed`` (rows inside a charge)."""
    if not isinstance(raw, Mapping):
        raise InvalidField(path, "must be an object")
    for key in raw:
        if key not in allowed:
            raise InvalidField(
                f"{path}.{key}",
                f"is not a {what} field; expected {', '.join(sorted(allowed))}",
            )
    return raw


# Imported after the types above: the model modules import them from this package.
from meterbill.domain.charges.graduated import Graduated  # noqa: E402
from meterbill.domain.charges.graduated_percentage import GraduatedPercentage  # noqa: E402
from meterbill.domain.charges.matrix import Matrix  # noqa: E402
from meterbill.domain.charges.package import Package  # noqa: E402
from meterbill.domain.charges.per_unit import PerUnit  # noqa: E402
from meterbill.domain.charges.percentage import Percentage  # noqa: E402
from meterbill.domain.charges.time_of_use import TimeOfUse  # noqa: E402
from meterbill.domain.charges.volume import Volume  # noqa: E402

REGISTRY: Mapping[str, ChargeModel] = MappingProxyType(
    {
        "per_unit": PerUnit(),
        "package": Package(),
        "graduated": Graduated(),
        "volume": Volume(),
        "percentage": Percentage(),
        "graduated_percentage": GraduatedPercentage(),
        "matrix": Matrix(),
        "time_of_use": TimeOfUse(),
    }
)


_NAMES = ", ".join(sorted(REGISTRY))

#: models that read ``Usage.groups`` / ``Usage.buckets``; the others price the total only
DETAILED = frozenset({"matrix", "time_of_use"})


def get_model(name: object, path: str) -> ChargeModel:
    """The model called ``name``, or ``UnknownChargeModel`` at ``{path}.model``."""
    model = REGISTRY.get(name) if isinstance(name, str) else None
    if model is None:
        raise UnknownChargeModel(
            f"{path}.model",
            f"unknown charge model {name!r}; expected one of: {_NAMES}",
        )
    return model
