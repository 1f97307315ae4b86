"""Stripe's currency table (integrations/stripe/currency.py): exact integer minor units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.stripe import currency as cur
from meterbill.domain.money import MINOR_UNITS


@pytest.mark.parametrize(("amount", "code", "units"), [
    ("12.34", "USD", 1234), ("0.01", "EUR", 1), ("-5.00", "USD", -500),
    ("500", "JPY", 500), ("7", "KRW", 7), ("12", "MGA", 12),          # zero-decimal: never x100
    ("5.120", "KWD", 5120), ("1.235", "BHD", 1235),                    # three-decimal
    ("500", "ISK", 50000),                                             # two-decimal API, whole krónur
])
def test_to_minor(amount: str, code: str, units: int) -> None:
    assert cur.to_minor(Decimal(amount), code) == units
    assert cur.from_minor(units, code) == Decimal(amount)


@pytest.mark.parametrize(("amount", "code", "message"), [
    ("12.345", "USD", "more decimals than Stripe's 2"),
    ("12.5", "JPY", "more decimals than Stripe's 0"),
    ("12.50", "MGA", "more decimals than Stripe's 0"),
    ("500.5", "ISK", "whole ISK only"),
    ("1.0000", "CLF", "Stripe does not take amounts in CLF"),
])
def test_amounts_stripe_cannot_hold_exactly_are_refused(amount: str, code: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cur.to_minor(Decimal(amount), code)


def test_three_decimal_charges_must_end_in_zero() -> None:
    assert cur.charge_problem("5.120", "KWD") is None
    assert "multiple of 0.010 KWD" in (cur.charge_problem("5.124", "KWD") or "")
    assert cur.charge_problem("5.12", "USD") is None


def test_the_table_differs_from_iso_only_where_stripe_does() -> None:
    differs = {code for code, exp in MINOR_UNITS.items()
               if code not in cur.UNSUPPORTED and cur.exponent(code) != exp}
    assert differs == {"ISK", "MGA"}             # ISK: 2 in the API (x100); MGA: zero-decimal in Stripe


@given(st.sampled_from(sorted(set(MINOR_UNITS) - cur.UNSUPPORTED)), st.integers(-10**15, 10**15))
def test_minor_units_round_trip(code: str, units: int) -> None:
    if code in cur.WHOLE_UNITS_ONLY:
        units -= units % 100
    assert cur.to_minor(cur.from_minor(units, code), code) == units
