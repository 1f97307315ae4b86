"""``matrix``: the unit price is chosen by the values of the meter's dimensions.

Plan properties::

    {"dimensions": ["region", "instance_type"],
     "prices": [{"match": {"region": "eu", "instance_type": "m5"}, "unit_amount": "0.12"},
                {"match": {"region": "us", "instance_type": null}, "unit_amount": "0.09"}],
     "default_unit_amount": "0.10"}

``dimensions`` (1-5 distinct names) must equal the meter's ``group_by`` (the catalog
checks it against ``params.dimensions``). Each row's ``match`` names EVERY dimension
with a string value, or ``null`` for "property absent on the event"; no two rows match
the same combination. ``default_unit_amount`` (optional) prices every other group.

Each dimension group of the usage (``usage.groups``) is priced at its row's unit price,
one :class:`Part` per group (label ``"region=eu, instance_type=m5"``, absent values
shown as ``(none)``), in a stable order. Groups with no usage are left out. A group
with usage that matches no row when there is no default cannot be known at parse
time: pricing raises ``ValueError("no matrix price for ...")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from meterbill.domain.charges import (
    GroupKey,
    Part,
    Priced,
    PricingContext,
    Usage,
    as_usage,
    check_keys,
    optional_amount,
    required_amount,
)
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import CONTEXT

__all__ = ["Matrix", "MatrixParams"]

_ZERO = Decimal(0)
_first = itemgetter(0)
_ROW_KEYS = frozenset({"match", "unit_amount"})
_MAX_DIMENSIONS = 5

Cell = tuple[str | None, ...]  # dimension values in ``dimensions`` order


@dataclass(frozen=True, slots=True)
class MatrixParams:
    dimensions: tuple[str, ...]
    prices: Mapping[Cell, Decimal]
    default_unit_amount: Decimal | None = None
    # group key -> its row (sort key, key, label, unit price, follows dimensions); filled by pricing
    rows: dict[GroupKey, _Row] = field(default_factory=dict, init=False, repr=False, compare=False)


# (sort key, group key, label, unit price or None, whether the key follows ``dimensions``)
_Row = tuple[tuple[tuple[str, bool, str], ...], GroupKey, str, Decimal | None, bool]


class Matrix:
    name = "matrix"
    additive_only = False

    def parse(self, raw: Mapping[str, Any], path: str) -> MatrixParams:
        if not isinstance(raw, Mapping):
            raise InvalidField(path, "must be an object")
        dimensions = _parse_dimensions(raw.get("dimensions"), f"{path}.dimensions")
        rows = raw.get("prices")
        rows_path = f"{path}.prices"
        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)) or not rows:
            raise InvalidField(rows_path, "must be a non-empty list of {match, unit_amount} rows")
        prices: dict[Cell, Decimal] = {}
        for i, raw_row in enumerate(rows):
            row_path = f"{rows_path}[{i}]"
            row = check_keys(raw_row, _ROW_KEYS, row_path, "matrix price")
            cell = _parse_match(row.get("match"), dimensions, f"{row_path}.match")
            if cell in prices:
                raise InvalidField(f"{row_path}.match", "repeats an earlier row's combination")
            prices[cell] = required_amount(row, "unit_amount", row_path)
        default = optional_amount(raw, "default_unit_amount", path)
        return MatrixParams(dimensions, MappingProxyType(prices), default)

    def price(
        self,
        usage: Usage | Decimal,
        params: MatrixParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        usage = as_usage(usage)
        groups = usage.groups
        if usage.quantity and not groups:
            raise ValueError("matrix needs the usage per dimension group (usage.groups)")
        rows = params.rows
        parts: list[Part] = []
        amount = _ZERO
        for _, key, label, unit_amount, follows in sorted([rows.get(k) or _row(params, k) for k in groups], key=_first):
            units = groups[key]
            if not units.is_finite() or (units.is_signed() and units):
                raise ValueError(f"group {key} usage must be a finite number >= 0, got {units}")
            if not follows:
                raise ValueError(f"group {key} does not follow dimensions {params.dimensions}")
            if not units:
                continue
            if unit_amount is None:
                raise ValueError(f"no matrix price for {label} and no default_unit_amount")
            part_amount = CONTEXT.multiply(units, unit_amount)
            parts.append(Part(label, units, unit_amount, part_amount))
            amount = CONTEXT.add(amount, part_amount)
        return Priced(amount, None, (), tuple(parts))


def _row(params: MatrixParams, key: GroupKey) -> _Row:
    """What pricing needs to know about one group key, memoised on ``params`` (keys recur in
    every period of every customer); rows sort by their first item, ``_sort_key(key)``."""
    row = (_sort_key(key), key, _label(key), params.prices.get(tuple(v for _, v in key), params.default_unit_amount),
           tuple(dim for dim, _ in key) == params.dimensions)
    if len(params.rows) >= 4096:
        params.rows.clear()
    params.rows[key] = row
    return row


def _parse_dimensions(raw: object, path: str) -> tuple[str, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise InvalidField(path, "must be a non-empty list of dimension (property) names")
    if len(raw) > _MAX_DIMENSIONS:
        raise InvalidField(path, f"must name at most {_MAX_DIMENSIONS} dimensions")
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not name:
            raise InvalidField(f"{path}[{i}]", "must be a non-empty property name")
        if name in raw[:i]:
            raise InvalidField(f"{path}[{i}]", f"repeats dimension {name!r}")
    return tuple(raw)


def _parse_match(raw: object, dimensions: tuple[str, ...], path: str) -> Cell:
    if not isinstance(raw, Mapping):
        raise InvalidField(path, "must be an object of dimension -> value")
    for key in raw:
        if key not in dimensions:
            raise InvalidField(
                f"{path}.{key}", f"is not a dimension; expected {', '.join(dimensions)}"
            )
    cell: list[str | None] = []
    for dim in dimensions:
        if dim not in raw:
            raise InvalidField(f"{path}.{dim}", "is required: a row matches every dimension")
        value = raw[dim]
        if value is not None and not isinstance(value, str):
            raise InvalidField(
                f"{path}.{dim}", "must be a string, or null for an absent property"
            )
        cell.append(value)
    return tuple(cell)


def _sort_key(key: GroupKey) -> tuple[tuple[str, bool, str], ...]:
    return tuple((dim, value is not None, value or "") for dim, value in key)


def _label(key: GroupKey) -> str:
    return ", ".join(f"{dim}={'(none)' if value is None else value}" for dim, value in key)
