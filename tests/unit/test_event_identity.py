"""Event identity (pure domain): one id grammar, an unambiguous content digest, one numeric range."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbill.domain.errors import InvalidField
from meterbill.domain.events import digest, loads, parse_batch
from meterbill.domain.ids import MAX_ID, check_id, is_id

NOW = 1_793_000_000_000
OK = {"id": "e1", "customer": "c", "type": "t", "timestamp": "2026-10-01T00:00:00Z", "properties": {}}


def errors_of(raw: dict[str, Any]) -> list[tuple[str, str]]:
    good, errors = parse_batch([raw], NOW)
    return [(e.field, e.code) for e in errors]


# -- ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["acme", "cus_01HZX", "a b", "ünïcødé", "user@example.com", "x:y;z",
                                   "550e8400-e29b-41d4-a716-446655440000", "(a)+b=c,d!*'$&~", "x" * MAX_ID])
def test_ids_accepted_everywhere(value: str) -> None:
    assert errors_of({**OK, "id": value, "customer": value}) == []
    assert check_id(value) == value


@pytest.mark.parametrize("value", ["acme ", " acme", "", "x" * (MAX_ID + 1), "a/b", "a?b", "a#b", "a%2Fb",
                                   "a\\b", "a\"b", "tab\there", "new\nline", "a\u200bb", "€uro", "\ud800"])
def test_ids_rejected_everywhere(value: str) -> None:
    assert errors_of({**OK, "customer": value}) == [("customer", errors_of({**OK, "id": value})[0][1])]
    assert errors_of({**OK, "id": value})[0][0] == "id"
    with pytest.raises(InvalidField) as exc:
        check_id(value)
    assert exc.value.field == "id"


@given(st.text(max_size=6))
def test_ingest_and_the_catalog_share_one_id_rule(value: str) -> None:
    """What ingest accepts as a customer is exactly what PUT /v1/customers/{id} accepts."""
    ingest_ok = errors_of({**OK, "customer": value}) == []
    try:
        check_id(value)
        catalog_ok = True
    except InvalidField:
        catalog_ok = False
    assert ingest_ok == catalog_ok == is_id(value)


def test_cloudevents_source_is_a_name_not_an_id() -> None:
    ce = {"specversion": "1.0", "id": "ce-1", "source": "/gateway/eu", "type": "api.call", "subject": "acme",
          "time": "2026-10-01T00:00:00Z", "data": {}}
    good, errors = parse_batch([ce], NOW, cloud=True)
    assert errors == [] and len(good) == 1
    _, errors = parse_batch([{**ce, "subject": "acme/eu"}], NOW, cloud=True)
    assert [(e.field, e.code) for e in errors] == [("subject", "invalid_characters")]


# -- content digest ---------------------------------------------------------------------------
def test_separator_inside_a_value_cannot_forge_a_digest() -> None:
    """Two different payloads that the old '\\x1f'-joined encoding hashed alike."""
    a = {"k": "v\x1fk2\x1fs:w"}
    b = {"k": "v", "k2": "w"}
    assert digest("c", "t", 1, a) != digest("c", "t", 1, b)
    assert digest("c\x1ft", "u", 1, {}) != digest("c", "t\x1fu", 1, {})


def test_digest_is_versioned() -> None:
    assert digest("c", "t", 1, {"n": 1}).startswith("2:")


@given(st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers(-5, 5), st.none()),
                       max_size=3),
       st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers(-5, 5), st.none()),
                       max_size=3))
def test_digest_equal_only_for_equal_content(a: dict, b: dict) -> None:
    from meterbill.domain.events import canonical_scalar

    same = {k: canonical_scalar(v) for k, v in a.items()} == {k: canonical_scalar(v) for k, v in b.items()}
    assert (digest("c", "t", 1, a) == digest("c", "t", 1, b)) == same


def test_unpaired_surrogate_is_a_per_event_error() -> None:
    raw = loads('{"events": [{"id": "e1", "customer": "c", "type": "t", "timestamp": "2026-10-01T00:00:00Z",'
                ' "properties": {"s": "\\ud800", "\\udc00": 1}}]}')["events"][0]
    assert errors_of(raw) == [("properties.s", "invalid_string")]


# -- numbers ----------------------------------------------------------------------------------
def props_errors(text: str) -> list[tuple[str, str]]:
    """One event whose properties are the JSON ``text``, parsed as ingest parses a body."""
    doc = loads('{"events": [{"id": "e1", "customer": "c", "type": "t", "timestamp": "2026-10-01T00:00:00Z", '
                '"properties": ' + text + '}]}')
    return errors_of(doc["events"][0])


@pytest.mark.parametrize("number", ["0", "-0.0", "9999999999999999", "-9999999999999999", "0.0000000001",
                                    "1.50000000000000000000", "123456.1234567890", "1e15", "1.5E-9",
                                    "9007199254740993"])
def test_numbers_in_range_are_accepted(number: str) -> None:
    assert props_errors('{"n": ' + number + "}") == []


@pytest.mark.parametrize("number", ["1e200", "1e-200", "1234567890123456789012345678901234567890", "1e16",
                                    "10000000000000000", "-1e16", "0.00000000001", "1.0000000000000001e5",
                                    "1e999", "-1e999", "1" * 5000, "NaN", "Infinity", "-Infinity"])
def test_numbers_out_of_range_are_per_event_errors(number: str) -> None:
    assert props_errors('{"ok": 1, "n": ' + number + "}") in (
        [("properties.n", "number_out_of_range")], [("properties.n", "invalid_number")])


def test_other_events_of_a_batch_survive_a_huge_integer() -> None:
    doc = loads('{"events": [{"id": "a", "customer": "c", "type": "t", "timestamp": "2026-10-01T00:00:00Z", '
                '"properties": {"n": ' + "9" * 5000 + '}}, {"id": "b", "customer": "c", "type": "t", '
                '"timestamp": "2026-10-01T00:00:00Z", "properties": {"n": 7}}]}')
    good, errors = parse_batch(doc["events"], NOW)
    assert [e.id for _, e in good] == ["b"] and good[0][1].properties == {"n": 7}
    assert [(e.index, e.field, e.code) for e in errors] == [(0, "properties.n", "number_out_of_range")]


def test_the_rule_keeps_sums_of_a_trillion_events_storable() -> None:
    """Every accepted value is a multiple of 10^-10 below 10^16: 10^12 of them sum to a multiple of
    10^-10 below 10^28, i.e. at most 38 significant digits (DynamoDB's limit)."""
    from decimal import Context

    from meterbill.domain.events import NUMBER_DECIMALS, NUMBER_INTEGER_DIGITS, number_problem

    largest = Decimal(10) ** NUMBER_INTEGER_DIGITS - Decimal(10) ** -NUMBER_DECIMALS
    assert number_problem(largest) is None and number_problem(largest + Decimal("1e-10")) is not None
    total = Context(prec=60).multiply(largest, Decimal(10) ** 12)
    assert len(total.as_tuple().digits) <= 38 and total.adjusted() < 126
    assert number_problem(Decimal(10) ** -NUMBER_DECIMALS) is None  # smallest magnitude >= 1E-130


def test_a_sum_meter_rejects_a_numeric_string_out_of_range() -> None:
    from meterbill.domain.events import Event
    from meterbill.domain.meters import parse_meter, problem_for

    meter = parse_meter("m", {"event_type": "t", "aggregation": "sum", "property": "v"})
    for text, ok in [("12.5", True), ("1e200", False), ("1e-200", False), ("1" * 40, False), ("abc", False)]:
        event = Event("e", "c", "t", 1, {"v": text}, "d")
        assert (problem_for(meter, event) is None) == ok, text
