"""Strict JSON bodies (``domain/json_body.py``, ``events.loads``): a repeated key is an error naming
where, nesting is bounded before the recursive parser runs (pure)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from meterbill.domain.errors import InvalidField
from meterbill.domain.events import loads, parse_batch
from meterbill.domain.json_body import MAX_DEPTH, DuplicateKeys, strict_loads

NOW_MS = 1_793_000_000_000


@pytest.mark.parametrize(("text", "field"), [
    ('{"base_fee": "1.00", "base_fee": "999.00"}', "base_fee"),
    ('{"charges": [{"tiers": [{"up_to": "1"}, {"unit_amount": "1", "up_to": null, "unit_amount": "2"}]}]}',
     "charges[0].tiers[1].unit_amount"),
    ('[{"a": 1}, {"b": {"c": 1, "c": 1}}]', "[1].b.c"),
    ('{"a": {"x": 1, "x": 2}, "b": {"y": 1, "y": 2}}', "a.x"),  # the first in document order
])
def test_a_repeated_key_names_its_path(text: str, field: str) -> None:
    with pytest.raises(InvalidField) as err:
        strict_loads(text)
    assert (err.value.field, err.value.code) == (field, "duplicate_key")
    assert "more than once" in err.value.problem
    assert json.loads(text)  # the standard library silently keeps the last one


def test_valid_bodies_read_as_json_loads_reads_them() -> None:
    text = '{"a": [1, 2.5, {"b": null, "c": "[{\\"]"}], "d": true}'
    assert strict_loads(text) == json.loads(text)
    assert strict_loads(text.encode()) == json.loads(text)
    assert strict_loads('{"x": 1.10}', parse_float=Decimal) == {"x": Decimal("1.10")}
    with pytest.raises(json.JSONDecodeError):
        strict_loads('{"a": ')
    with pytest.raises(InvalidField) as err:
        strict_loads(b'{"a": "\xff"}')
    assert err.value.field == "body"


def test_nesting_is_bounded_before_parsing() -> None:
    assert strict_loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    for text in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), '{"a":' * 100_000 + "1" + "}" * 100_000,
                 "[" * 1_000_000):  # RecursionError before; unterminated: still "too deep", never a crash
        with pytest.raises(InvalidField) as err:
            strict_loads(text)
        assert (err.value.field, err.value.code) == ("body", "too_deep")
    # brackets inside strings (escaped quotes too) are text, not nesting
    deep_text = json.dumps({"a": "[" * 500 + '\\"{' * 200})
    assert strict_loads(deep_text) == json.loads(deep_text)


def test_events_loads_marks_repeats_and_rejects_only_that_event() -> None:
    body = ('{"events": [{"id": "e1", "customer": "c", "type": "t", "timestamp": "2026-10-10T10:00:00Z",'
            ' "properties": {"n": 1, "n": 2}},'
            ' {"id": "e2", "id": "e3", "customer": "c", "type": "t", "timestamp": "2026-10-10T10:00:00Z"},'
            ' {"id": "e4", "customer": "c", "type": "t", "timestamp": "2026-10-10T10:00:00Z", "properties": {"n": 1.5}}]}')
    doc = loads(body)
    assert type(doc) is dict and type(doc["events"][0]["properties"]) is DuplicateKeys
    good, errors = parse_batch(doc["events"], NOW_MS)
    assert [(e.index, e.field, e.code) for e in errors] == [(0, "properties.n", "duplicate_key"),
                                                            (1, "id", "duplicate_key")]
    assert [(i, e.properties) for i, e in good] == [(2, {"n": Decimal("1.5")})]
    for deep in ('{"events": ' + "[" * 100_000 + "]" * 100_000 + "}", "[" * 1_000_000):
        with pytest.raises(InvalidField) as err:  # a RecursionError before
            loads(deep)
        assert (err.value.field, err.value.code) == ("body", "too_deep")
