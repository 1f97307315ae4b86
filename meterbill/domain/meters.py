"""Meters: which events count, and how they aggregate into time buckets (pure).

Usage is pre-aggregated as events arrive into ``BUCKET_SECONDS`` buckets per
customer / meter / dimension group, so closing a period reads buckets, never events.
15 minutes is the coarsest width that still splits exactly at every real time zone's
local midnight (+05:30, +05:45 …), which periods and time-of-use pricing need.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from meterbill.domain import limits
from meterbill.domain.charges import Cell, Usage
from meterbill.domain.errors import InvalidField
from meterbill.domain.events import Event, Scalar, canonical_scalar, number_problem
from meterbill.domain.ids import check_name

BUCKET_SECONDS = 900
AGGREGATIONS = ("count", "sum", "max", "min", "unique_count", "latest")
NUMERIC = frozenset({"sum", "max", "min", "latest"})
CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
CODE_RULE = "must be 1-64 characters of letters, digits, '_', '-' or '.' (not . or ..)"
# The same rule as a regular expression without look-arounds (JSON Schema, pydantic's Rust engine):
# a first character that is not '.', or '.' and then one that is not, or '..' and at least one more.
CODE_PATTERN = (r"^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}|\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}"
                r"|\.\.[A-Za-z0-9_.-]{1,62})$")


def check_code(code: object, field_name: str = "code") -> str:
    if type(code) is not str or not 0 < len(code) <= 64 or not set(code) <= CODE_CHARS or code in (".", ".."):
        raise InvalidField(field_name, CODE_RULE)
    return code


@dataclass(frozen=True, slots=True)
class Meter:
    code: str
    event_type: str
    aggregation: str
    property: str | None = None
    filter: tuple[tuple[str, frozenset[str]], ...] = ()
    group_by: tuple[str, ...] = ()
    name: str | None = None
    unit: str | None = None
    keep_values: bool = False  # sum only: buckets also keep each event's value (value -> count)

    def semantics(self) -> tuple[Any, ...]:
        """What decides the numbers; it may not change once usage has been recorded."""
        return (self.event_type, self.aggregation, self.property, self.filter, self.group_by, self.keep_values)


def parse_meter(code: str, raw: Mapping[str, Any]) -> Meter:
    check_code(code)
    event_type = raw.get("event_type")
    if event_type is None:
        raise InvalidField("event_type", "is required: the event type this meter counts")
    check_name(event_type, "event_type")  # the rule events' "type" follows, or no event could match
    aggregation = raw.get("aggregation")
    if aggregation not in AGGREGATIONS:
        raise InvalidField("aggregation", f"must be one of: {', '.join(AGGREGATIONS)}")
    prop = raw.get("property")
    if aggregation == "count":
        if prop is not None:
            raise InvalidField("property", "must be omitted for aggregation 'count'")
    elif type(prop) is not str or not prop:
        raise InvalidField("property", f"is required for aggregation '{aggregation}'")
    flt = raw.get("filter") or {}
    if type(flt) is not dict:
        raise InvalidField("filter", "must be an object of property -> list of accepted values")
    pairs = []
    for key, values in sorted(flt.items()):
        if type(values) is not list or not values:
            raise InvalidField(f"filter.{key}", "must be a non-empty list of accepted values")
        for v in values:
            if type(v) not in (str, int, bool) and not isinstance(v, Decimal):
                raise InvalidField(f"filter.{key}", "values must be strings, numbers or booleans")
        pairs.append((key, frozenset(canonical_scalar(v) for v in values)))
    group_by = raw.get("group_by") or []
    if type(group_by) is not list or not all(type(g) is str and g for g in group_by):
        raise InvalidField("group_by", "must be a list of property names")
    if len(set(group_by)) != len(group_by) or len(group_by) > 5:
        raise InvalidField("group_by", "must name at most 5 distinct properties")
    for key in ("name", "unit"):
        if raw.get(key) is not None and type(raw.get(key)) is not str:
            raise InvalidField(key, "must be a string")
    keep = raw.get("keep_values") or False
    if type(keep) is not bool:
        raise InvalidField("keep_values", "must be true or false")
    if keep and aggregation != "sum":
        raise InvalidField("keep_values", f"is only for aggregation 'sum' (this meter uses '{aggregation}')")
    return Meter(code, event_type, aggregation, prop, tuple(pairs), tuple(group_by),
                 raw.get("name"), raw.get("unit"), keep)


def check_meter_input(raw: Mapping[str, Any]) -> None:
    """Sizes of a meter a client saves (after :func:`parse_meter` accepted it; stored meters are
    read as they are): names, unit, property names (an event's property keys have at most
    ``MAX_PROPERTY`` characters, so a longer one could never match), filter values."""
    limits.check_text(raw.get("name"), "name", limits.MAX_NAME)
    limits.check_text(raw.get("unit"), "unit", limits.MAX_UNIT)
    limits.check_text(raw.get("property"), "property", limits.MAX_PROPERTY)
    for i, dim in enumerate(raw.get("group_by") or []):
        limits.check_text(dim, f"group_by[{i}]", limits.MAX_PROPERTY)
    flt = raw.get("filter") or {}
    limits.check_count(flt, "filter", limits.MAX_FILTER_KEYS, "properties")
    for key, values in flt.items():
        if not 0 < len(key) <= limits.MAX_PROPERTY or not limits.valid_text(key):
            raise InvalidField("filter", f"property names must be 1 to {limits.MAX_PROPERTY} characters "
                                         f"(got {len(key)})", "too_long")
        limits.check_count(values, f"filter.{key}", limits.MAX_FILTER_VALUES, "values")
        for j, value in enumerate(values):
            if type(value) is str:
                limits.check_text(value, f"filter.{key}[{j}]", limits.MAX_VALUE)


def meter_to_dict(m: Meter) -> dict[str, Any]:
    return {"code": m.code, "event_type": m.event_type, "aggregation": m.aggregation,
            "property": m.property,
            "filter": {k: [from_canonical(x) for x in sorted(v)] for k, v in m.filter},
            "group_by": list(m.group_by), "name": m.name, "unit": m.unit, "keep_values": m.keep_values}


def from_canonical(text: str) -> Scalar:
    """Inverse of events.canonical_scalar."""
    tag, value = text[:2], text[2:]
    if tag == "n:":
        return int(value) if value.lstrip("-").isdigit() else Decimal(value)
    if tag == "b:":
        return value == "true"
    return None if tag == "z:" else value


def to_number(value: Scalar) -> Decimal | None:
    t = type(value)
    if t is int or t is Decimal:
        return Decimal(value)  # type: ignore[arg-type]
    if t is str:
        try:
            d = Decimal(value)  # type: ignore[arg-type]
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def matches(meter: Meter, event: Event) -> bool:
    if event.type != meter.event_type:
        return False
    props = event.properties
    for key, accepted in meter.filter:
        if key not in props or canonical_scalar(props[key]) not in accepted:
            return False
    return True


def problem_for(meter: Meter, event: Event) -> str | None:
    """Why this event cannot be aggregated by ``meter`` (None when it can)."""
    if meter.aggregation == "count":
        return None
    value = event.properties.get(meter.property)  # type: ignore[arg-type]
    if value is None:
        return f"is required by meter '{meter.code}' ({meter.aggregation})"
    if meter.aggregation in NUMERIC:
        number = to_number(value)
        why = "must be a number" if number is None else number_problem(number)  # the one numeric range
        if why:
            return f"{why} for meter '{meter.code}' ({meter.aggregation})"
    return None


# A bucket's sort key is "<start:012d>#<meter>#<group key>" (+ "#<page id>" for value pages), and
# DynamoDB keeps a sort key to 1,024 bytes: the group key gets what a 64-character meter code leaves.
MAX_GROUP_KEY_BYTES = 900


def group_problem(meter: Meter, event: Event) -> tuple[str, str] | None:
    """(field, problem) when the event's dimension values are too long to group usage by."""
    if not meter.group_by:
        return None
    size = len(group_key(meter, event).encode())
    if size <= MAX_GROUP_KEY_BYTES:
        return None
    longest = max(meter.group_by, key=lambda d: len(str(event.properties.get(d, ""))))
    return (f"properties.{longest}", f"meter '{meter.code}' groups usage by {', '.join(meter.group_by)}: "
                                     f"their values take {size} bytes, at most {MAX_GROUP_KEY_BYTES} are possible")


def group_key(meter: Meter, event: Event) -> str:
    if not meter.group_by:
        return ""
    props = event.properties
    return json.dumps([canonical_scalar(props.get(d)) for d in meter.group_by], separators=(",", ":"))


def group_values(meter: Meter, key: str) -> dict[str, str | None]:
    if not key:
        return {}
    values = json.loads(key)
    return {dim: (None if v == "z:" else v[2:]) for dim, v in zip(meter.group_by, values)}


@dataclass(slots=True)
class BucketState:
    """Aggregation state of one bucket; mergeable, so buckets roll up into any window."""

    count: int = 0
    sum: Decimal = Decimal(0)
    max: Decimal | None = None
    min: Decimal | None = None
    latest: tuple[int, str, Decimal] | None = None  # (ts_ms, event id, value)
    uniques: set[str] = field(default_factory=set)
    values: dict[Decimal, int] = field(default_factory=dict)  # keep_values meters: value -> events

    def add(self, meter: Meter, event: Event) -> None:
        self.count += 1
        agg = meter.aggregation
        if agg == "count":
            return
        raw = event.properties.get(meter.property)  # type: ignore[arg-type]
        if agg == "unique_count":
            self.uniques.add(canonical_scalar(raw))
            return
        value = to_number(raw)
        if value is None:
            raise ValueError(f"event {event.id}: property {meter.property} is not numeric")
        if agg == "sum":
            self.sum += value
            if meter.keep_values:
                self.values[value] = self.values.get(value, 0) + 1
        elif agg == "max":
            self.max = value if self.max is None or value > self.max else self.max
        elif agg == "min":
            self.min = value if self.min is None or value < self.min else self.min
        else:
            candidate = (event.ts_ms, event.id, value)
            if self.latest is None or candidate[:2] > self.latest[:2]:
                self.latest = candidate

    def merge(self, other: BucketState) -> None:
        self.count += other.count
        self.sum += other.sum
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.latest is not None and (self.latest is None or other.latest[:2] > self.latest[:2]):
            self.latest = other.latest
        self.uniques |= other.uniques
        if other.values:
            add_values(self.values, other.values)


def add_values(into: dict[Decimal, int], more: Mapping[Decimal, int]) -> None:
    """Multiset union: ``into[v] += more[v]`` (equal decimals such as 1.0 and 1.00 are one value)."""
    get = into.get
    for value, n in more.items():
        into[value] = get(value, 0) + n


def quantity(aggregation: str, states: Iterable[BucketState]) -> Decimal:
    """Roll bucket states up into the meter's quantity (0 when there is no usage)."""
    states = list(states)
    if aggregation == "count":
        return Decimal(sum(s.count for s in states))
    if aggregation == "sum":
        return sum((s.sum for s in states), Decimal(0))
    if aggregation == "max":
        return max((s.max for s in states if s.max is not None), default=Decimal(0))
    if aggregation == "min":
        return min((s.min for s in states if s.min is not None), default=Decimal(0))
    if aggregation == "unique_count":
        return Decimal(len(set().union(*(s.uniques for s in states))))
    latest = max((s.latest for s in states if s.latest is not None), key=lambda t: t[:2], default=None)
    return latest[2] if latest is not None else Decimal(0)


ADDITIVE = frozenset({"count", "sum"})


def usage_of(meter: Meter, buckets: Iterable[tuple[int, str, BucketState]], detail: bool = True) -> Usage:
    """One meter's usage over a period, from its buckets ``(start epoch s, group key, state)``:
    the total; for ``keep_values`` meters the multiset of event values (percentage per-event
    min/max; its cost grows with distinct values, so only meters that keep them pay it); and,
    when ``detail`` (the charge model reads them), the aggregate per dimension group (matrix)
    and, for additive meters, per 15-minute bucket (time-of-use)."""
    buckets = buckets if isinstance(buckets, list) else list(buckets)
    states = [b[2] for b in buckets]
    total = quantity(meter.aggregation, states)
    events = sum(s.count for s in states)
    values: dict[Decimal, int] | None = None
    if meter.keep_values:
        values = {}
        for s in states:
            add_values(values, s.values)
    cells = _Cells(meter, buckets) if meter.aggregation in ADDITIVE else ()
    if not detail:
        return Usage(total, events, values=values, cells=cells)
    by_group: dict[str, list[BucketState]] = {}
    for _, g, st in buckets:
        by_group.setdefault(g, []).append(st)
    groups = {} if not meter.group_by else {
        tuple(group_values(meter, g).items()): quantity(meter.aggregation, sts) for g, sts in by_group.items()}
    series: tuple[tuple[int, Decimal], ...] = ()
    if meter.aggregation in ADDITIVE:
        per_start: dict[int, Decimal] = {}
        for start, _, st in buckets:
            add = Decimal(st.count) if meter.aggregation == "count" else st.sum
            per_start[start] = per_start.get(start, Decimal(0)) + add
        series = tuple(sorted(per_start.items()))
    return Usage(total, events, groups, series, values, cells)


class _Cells:
    """An additive meter's usage per 15-minute cell (all groups together), in time order; built
    each time it is iterated, so rating pays for it only in the charges that read it."""

    __slots__ = ("_buckets", "_count", "_keep")

    def __init__(self, meter: Meter, buckets: list[tuple[int, str, BucketState]]) -> None:
        self._buckets, self._count, self._keep = buckets, meter.aggregation == "count", meter.keep_values

    def __iter__(self) -> Iterator[Cell]:
        per_start: dict[int, list[BucketState]] = {}
        for start, _, st in self._buckets:
            per_start.setdefault(start, []).append(st)
        for start in sorted(per_start):
            states = per_start[start]
            events = sum(s.count for s in states)
            amount = Decimal(events) if self._count else sum((s.sum for s in states), Decimal(0))
            values: dict[Decimal, int] | None = None
            if self._keep:
                values = {}
                for s in states:
                    add_values(values, s.values)
            yield Cell(start, events, amount, values)


def bucket_start(ts_ms: int) -> int:
    """Epoch seconds of the start of the bucket holding ``ts_ms``."""
    return ts_ms // 1000 // BUCKET_SECONDS * BUCKET_SECONDS


def bucket_range(start: datetime, end: datetime, started_at: datetime) -> tuple[int, int]:
    """The usage buckets billed in ``[start, end)`` of a subscription started at ``started_at``:
    those whose start ``s`` (epoch seconds) has ``lo <= s < hi``. The rule, shared by every reader
    of a period's usage (close, upcoming invoice, late re-rating, a line's usage, the usage view)
    and by the late-usage marker (:func:`billed_from`): a bucket is billed in the period its start
    lies in, except the bucket holding ``started_at``, which is billed in the first period even when
    ``started_at`` is off the 15-minute grid (the bucket starts before the subscription)."""
    lo = math.ceil(start.timestamp())
    if start <= started_at:
        lo = lo // BUCKET_SECONDS * BUCKET_SECONDS
    return lo, math.ceil(end.timestamp())


def billed_from(bucket_start_s: int, started_at: datetime) -> datetime | None:
    """The instant whose period bills the bucket starting at ``bucket_start_s`` (see
    :func:`bucket_range`): its start, or ``started_at`` for the bucket holding it; None for a
    bucket that ends before the subscription starts (no period bills it)."""
    start = datetime.fromtimestamp(bucket_start_s, tz=started_at.tzinfo)
    if start >= started_at:
        return start
    return started_at if bucket_start_s + BUCKET_SECONDS > started_at.timestamp() else None
