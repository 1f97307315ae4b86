"""Event validation and usage aggregation (pure domain), with property tests."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain.events import MAX_BATCH, Event, canonical_scalar, digest, loads, parse_batch
from meterbill.domain.meters import BucketState, parse_meter, quantity

NOW = 1_793_000_000_000  # 2026-10-26T...Z in ms
OK = {"id": "e1", "customer": "c", "type": "t", "timestamp": "2026-10-01T00:00:00Z", "properties": {"n": 1}}


def test_each_index_gets_exactly_one_outcome() -> None:
    raws = [OK, {**OK, "id": "e2", "timestamp": None}, "not an object", {**OK, "id": "e3"},
            {**OK, "id": " padded"}, {**OK, "id": "e4", "properties": {"x": {"nested": 1}}},
            {**OK, "id": "e1"}]  # identical repeat of index 0: dropped silently
    good, errors = parse_batch(raws, NOW)
    assert [i for i, _ in good] == [0, 3]
    assert {(e.index, e.field, e.code) for e in errors} == {
        (1, "timestamp", "required"), (2, "", "invalid_type"), (4, "id", "invalid_characters"),
        (5, "properties.x", "invalid_type")}


def test_json_numbers_stay_exact() -> None:
    raw = loads('{"n": 0.1000000000000000055511151231257827, "i": 12345678901234567890123}')
    assert raw["n"] == Decimal("0.1000000000000000055511151231257827") and raw["i"] == 12345678901234567890123


def test_timestamp_with_offset_is_normalised() -> None:
    (_, a), = parse_batch([{**OK, "timestamp": "2026-10-01T02:00:00+02:00"}], NOW)[0]
    (_, b), = parse_batch([OK], NOW)[0]
    assert a.ts_ms == b.ts_ms and a.digest == b.digest


scalars = st.one_of(st.text(max_size=5), st.integers(-10**6, 10**6), st.booleans(), st.none(),
                    st.decimals(allow_nan=False, allow_infinity=False, places=3))


@given(st.dictionaries(st.text(min_size=1, max_size=4), scalars, max_size=6))
def test_digest_ignores_key_order_and_number_spelling(props: dict) -> None:
    reordered = dict(reversed(list(props.items())))
    respelled = {k: (Decimal(v).normalize() if type(v) is int else v) for k, v in props.items()}
    assert digest("c", "t", 1, props) == digest("c", "t", 1, reordered) == digest("c", "t", 1, respelled)


def test_one_and_string_one_differ() -> None:
    assert canonical_scalar(1) != canonical_scalar("1") and canonical_scalar(Decimal("1.0")) == canonical_scalar(1)


def test_batch_limit_constant() -> None:
    assert MAX_BATCH == 1000


def _events(values: list[Decimal]) -> list[Event]:
    return [Event(f"e{i}", "c", "t", 1_790_000_000_000 + i * 1000, {"v": v, "u": f"user{int(v) % 3}"},
                  f"d{i}") for i, v in enumerate(values)]


values = st.lists(st.decimals(min_value=-1000, max_value=1000, allow_nan=False, places=2), min_size=0, max_size=40)


@settings(max_examples=200)
@given(values, st.lists(st.integers(0, 5), min_size=40, max_size=40))
def test_any_bucketing_gives_the_same_quantity(vals: list[Decimal], split: list[int]) -> None:
    """Splitting events over buckets and merging them back never changes a meter's quantity:
    what makes pre-aggregation safe."""
    events = _events(vals)
    for agg, prop in [("count", None), ("sum", "v"), ("max", "v"), ("min", "v"), ("latest", "v"),
                      ("unique_count", "u")]:
        meter = parse_meter("m", {"event_type": "t", "aggregation": agg, "property": prop})
        whole = BucketState()
        parts = [BucketState() for _ in range(6)]
        for i, e in enumerate(events):
            whole.add(meter, e)
            parts[split[i]].add(meter, e)
        assert quantity(agg, parts) == quantity(agg, [whole]), agg
        expected = {"count": Decimal(len(vals)), "sum": sum(vals, Decimal(0)),
                    "max": max(vals, default=Decimal(0)), "min": min(vals, default=Decimal(0)),
                    "latest": vals[-1] if vals else Decimal(0),
                    "unique_count": Decimal(len({int(v) % 3 for v in vals}))}[agg]
        assert quantity(agg, parts) == expected, agg


def test_meter_rejects_bad_definitions_naming_the_field() -> None:
    import pytest

    from meterbill.domain.errors import InvalidField

    for raw, field in [({"event_type": "t", "aggregation": "avg"}, "aggregation"),
                       ({"event_type": "t", "aggregation": "sum"}, "property"),
                       ({"event_type": "t", "aggregation": "count", "property": "x"}, "property"),
                       ({"event_type": "t", "aggregation": "count", "filter": {"a": []}}, "filter.a"),
                       ({"aggregation": "count"}, "event_type")]:
        with pytest.raises(InvalidField) as err:
            parse_meter("m", raw)
        assert err.value.field == field, json.dumps(raw)
