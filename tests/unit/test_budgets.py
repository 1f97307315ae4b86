"""Spend budgets: parsing (the field named), thresholds crossed, the spend check's arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from meterbill.domain.budgets import Budget, SpendCheck, parse_budget, parse_thresholds
from meterbill.domain.errors import InvalidField


def test_a_budget_defaults_to_50_80_100() -> None:
    b = parse_budget({"amount": "500.00"}, "USD")
    assert b == Budget(Decimal("500.00"), "USD", (50, 80, 100))


def test_thresholds_are_sorted_whole_percentages() -> None:
    assert parse_thresholds([100, 25, "75"]) == (25, 75, 100)


@pytest.mark.parametrize("raw, field", [
    ({}, "amount"), ({"amount": "0"}, "amount"), ({"amount": "-5"}, "amount"), ({"amount": "1.001"}, "amount"),
    ({"amount": 1.5}, "amount"), ({"amount": "10", "currency": "EUR"}, "currency"),
    ({"amount": "10", "thresholds": []}, "thresholds"), ({"amount": "10", "thresholds": "50"}, "thresholds"),
    ({"amount": "10", "thresholds": [50, 0]}, "thresholds[1]"), ({"amount": "10", "thresholds": [50, 50]}, "thresholds[1]"),
    ({"amount": "10", "thresholds": [True]}, "thresholds[0]"), ({"amount": "10", "thresholds": [1001]}, "thresholds[0]"),
])
def test_bad_input_names_the_field(raw: dict, field: str) -> None:
    with pytest.raises(InvalidField) as exc:
        parse_budget(raw, "USD")
    assert exc.value.field == field


def test_thresholds_crossed_include_the_exact_boundary() -> None:
    b = Budget(Decimal("200"), "USD", (50, 80, 100))
    assert b.crossed(Decimal("99.99")) == ()
    assert b.crossed(Decimal("100")) == (50,)
    assert b.crossed(Decimal("160")) == (50, 80)
    assert b.crossed(Decimal("250")) == (50, 80, 100)


def test_spend_check() -> None:
    b = Budget(Decimal("100"), "USD", (100,))
    assert SpendCheck(Decimal("60"), Decimal("40"), b).within_budget
    over = SpendCheck(Decimal("60"), Decimal("40.01"), b)
    assert not over.within_budget and over.projected == Decimal("100.01") and over.remaining == Decimal("40")
    assert SpendCheck(Decimal("1e9"), Decimal("1"), None).within_budget   # no budget: never over
