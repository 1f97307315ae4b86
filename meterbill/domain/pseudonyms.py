"""Pseudonyms for personal values in usage (pure): which values an erasure replaces, and by what.

A value is *kept* when the catalog itself names it — a meter's ``filter`` value, a ``matrix``
price's ``match`` value (any saved plan version, or the customer's price overrides) — or when it is
a quantity a meter aggregates (the ``property`` of a sum / max / min / latest meter). Those are
price-list terms and amounts, not facts about a person, and keeping them keeps every price the
same. Any other string or number (user ids, e-mail addresses, IPs in ``group_by`` dimensions,
``unique_count`` values, free-form properties) is replaced by ``erased:<hmac>``. ``null`` and
booleans are kept.

The pseudonym is HMAC-SHA256 under one random key per erasure, over the value's type-tagged
canonical text: equal values get equal pseudonyms (dimension groups and distinct counts keep
their shape, so re-rating gives the same amounts) and different values different ones (80 bits).
Once the key is forgotten nothing maps a pseudonym back or links it to later data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meterbill.domain.events import Scalar, canonical_scalar
from meterbill.domain.meters import Meter, to_number

PREFIX = "erased:"
QUANTITY_AGGREGATIONS = frozenset({"sum", "max", "min", "latest"})


@dataclass(frozen=True)
class Kept:
    """Values the catalog names: per meter and dimension the matrix ``match`` values (as the
    rating compares them, without type tag); per event type and property the canonical filter
    values, and the properties whose numbers a meter aggregates."""

    matrix: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    filters: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    quantities: frozenset[tuple[str, str]] = frozenset()
    dimensions: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)  # (type, prop) -> meters


def kept_values(meters: Iterable[Meter], plan_docs: Iterable[Mapping[str, Any]],
                overrides: Iterable[Mapping[str, Any]] = ()) -> Kept:
    """``plan_docs``: every saved plan version; ``overrides``: the customer's price overrides
    (``{"charges": {meter: {...}}}``) over its plan history."""
    meters = list(meters)
    matrix: dict[tuple[str, str], set[str]] = {}

    def add_prices(meter: str, prices: Any) -> None:
        for row in prices if isinstance(prices, list) else ():
            for dim, value in (row.get("match") or {}).items() if isinstance(row, Mapping) else ():
                if value is not None:
                    matrix.setdefault((meter, dim), set()).add(str(value))

    for doc in plan_docs:
        for charge in doc.get("charges") or ():
            if isinstance(charge, Mapping) and charge.get("model") == "matrix":
                add_prices(str(charge.get("meter")), charge.get("prices"))
    for ov in overrides:
        for meter, charge in ((ov or {}).get("charges") or {}).items():
            if isinstance(charge, Mapping):
                add_prices(meter, charge.get("prices"))
    filters: dict[tuple[str, str], set[str]] = {}
    dimensions: dict[tuple[str, str], set[str]] = {}
    quantities = set()
    for m in meters:
        for prop, values in m.filter:
            filters.setdefault((m.event_type, prop), set()).update(values)
        for dim in m.group_by:
            dimensions.setdefault((m.event_type, dim), set()).add(m.code)
        if m.aggregation in QUANTITY_AGGREGATIONS and m.property:
            quantities.add((m.event_type, m.property))
    return Kept({k: frozenset(v) for k, v in matrix.items()}, {k: frozenset(v) for k, v in filters.items()},
                frozenset(quantities), {k: frozenset(v) for k, v in dimensions.items()})


def is_pseudonym(canonical: str) -> bool:
    return canonical.startswith("s:" + PREFIX)


class Pseudonyms:
    def __init__(self, key: bytes, kept: Kept) -> None:
        self._key = key
        self.kept = kept

    def canonical(self, text: str) -> str:
        """A canonical scalar (``"s:alice"``, ``"n:42"``) -> ``"s:erased:<hmac>"``; ``null``,
        booleans and pseudonyms stay as they are."""
        if text[:2] in ("z:", "b:") or is_pseudonym(text):
            return text
        mac = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:20]
        return f"s:{PREFIX}{mac}"

    def group(self, meter: Meter, key: str) -> str:
        """A bucket's dimension group key (meters.group_key) with its personal values replaced."""
        if not key:
            return key
        values = json.loads(key)
        out = [v if v[2:] in self.kept.matrix.get((meter.code, dim), ()) else self.canonical(v)
               for dim, v in zip(meter.group_by, values)]
        return json.dumps(out, separators=(",", ":"))

    def uniques(self, values: Iterable[str]) -> set[str]:
        return {self.canonical(v) for v in values}

    def properties(self, event_type: str, props: Mapping[str, Scalar]) -> dict[str, Scalar]:
        """A raw event's properties with every value the catalog does not name replaced."""
        out: dict[str, Scalar] = {}
        for name, value in props.items():
            out[name] = value if self._keeps(event_type, name, value) else \
                self.canonical(canonical_scalar(value))[2:]
        return out

    def _keeps(self, event_type: str, name: str, value: Scalar) -> bool:
        if value is None or isinstance(value, bool):
            return True
        text = canonical_scalar(value)
        if is_pseudonym(text) or text in self.kept.filters.get((event_type, name), ()):
            return True
        if (event_type, name) in self.kept.quantities and to_number(value) is not None:
            return True
        return any(text[2:] in self.kept.matrix.get((meter, name), ())
                   for meter in self.kept.dimensions.get((event_type, name), ()))
