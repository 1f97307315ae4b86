"""Size limits of what clients store (``domain/limits.py``, pure)."""

from __future__ import annotations

import pytest

from meterbill.domain import limits
from meterbill.domain.errors import InvalidField
from meterbill.domain.meters import check_meter_input


def test_text_is_bounded_in_characters_and_must_be_storable_as_utf8() -> None:
    assert limits.check_text("é" * 200, "name", limits.MAX_NAME) == "é" * 200
    assert limits.check_text(None, "name", limits.MAX_NAME) is None
    for value, problem in [("x" * 201, "at most 200 characters (got 201)"), (5, "must be a string"),
                           ("a\ud800b", "no unpaired surrogates")]:
        with pytest.raises(InvalidField) as err:
            limits.check_text(value, "charges[0].display_name", limits.MAX_NAME)
        assert err.value.field == "charges[0].display_name" and problem in err.value.problem
    with pytest.raises(InvalidField, match="is required"):
        limits.check_text(None, "name", limits.MAX_NAME, required=True)


def test_metadata_follows_stripes_limits() -> None:
    ok = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(50)}
    assert limits.check_metadata(ok) == ok and limits.check_metadata(None) == {}
    for value, field in [({f"k{i}": "v" for i in range(51)}, "metadata"), ({"k" * 41: "v"}, "metadata"),
                         ({"": "v"}, "metadata"), ({"k": "v" * 501}, "metadata.k"), ({"k": 1}, "metadata.k"),
                         (["k"], "metadata")]:
        with pytest.raises(InvalidField) as err:
            limits.check_metadata(value)
        assert err.value.field == field


def test_a_document_is_bounded_as_a_whole_naming_its_largest_field() -> None:
    doc = {"name": "n", "charges": [{"x": "y" * 60_000}, {"x": "y" * 60_000}], "other": "z" * 100}
    with pytest.raises(InvalidField) as err:
        limits.check_document(doc, limits.MAX_PLAN_BYTES, "plan", "plan.")
    assert err.value.field == "plan.charges" and "at most 100,000" in err.value.problem
    limits.check_document({"name": "n", "charges": [{"x": "y" * 60_000}]}, limits.MAX_PLAN_BYTES, "plan")


def test_a_document_with_an_unstorable_string_anywhere_names_it() -> None:
    for doc, field in [({"a": [{"b": "ok"}, {"b": "\udc00"}]}, "a[1].b"), ({"a": {"\ud800": "v"}}, "a")]:
        with pytest.raises(InvalidField) as err:
            limits.check_document(doc, 1000, "plan")
        assert err.value.field == field


@pytest.mark.parametrize(("raw", "field"), [
    ({"property": "p" * 129}, "property"), ({"name": "n" * 201}, "name"), ({"unit": "u" * 51}, "unit"),
    ({"group_by": ["ok", "g" * 129]}, "group_by[1]"), ({"filter": {f"k{i}": ["v"] for i in range(11)}}, "filter"),
    ({"filter": {"k": ["v"] * 101}}, "filter.k"), ({"filter": {"k": ["ok", "v" * 1025]}}, "filter.k[1]"),
])
def test_meter_sizes(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        check_meter_input({"event_type": "t", "aggregation": "sum", **raw})
    assert err.value.field == field
    check_meter_input({"event_type": "t", "aggregation": "sum", "property": "p" * 128, "name": "n" * 200})
