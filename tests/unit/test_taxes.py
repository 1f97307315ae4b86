"""Taxes (pure): rate choice, exclusive/inclusive, exemption, EU reverse charge, exact sums."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbill.domain.errors import InvalidField
from meterbill.domain.money import ROUNDING_MODES
from meterbill.domain.taxes import (REVERSE_CHARGE_NOTE, TaxParty, choose_rate, parse_tax_rate, tax_lines,
                                    total_with)

RATES = [parse_tax_rate("de", {"name": "VAT 19%", "percentage": "19", "country": "DE"}),
         parse_tax_rate("fr", {"name": "TVA 20%", "percentage": "20", "country": "FR"}),
         parse_tax_rate("us", {"name": "No sales tax", "percentage": "0", "country": "US"}),
         parse_tax_rate("us-ca", {"name": "CA sales tax", "percentage": "7.25", "country": "US", "state": "CA"})]


def test_exclusive_tax_is_added_once_and_rounded_once() -> None:
    lines = tax_lines(Decimal("61.51"), "EUR", RATES, TaxParty("DE"), "DE", inclusive=False)
    assert [(t.name, t.amount) for t in lines] == [("VAT 19%", Decimal("11.69"))]  # 11.6869
    assert total_with(Decimal("61.51"), lines, False) == Decimal("73.20")


def test_inclusive_prices_contain_the_tax() -> None:
    lines = tax_lines(Decimal("119.00"), "EUR", RATES, TaxParty("DE"), "DE", inclusive=True)
    assert (lines[0].amount, lines[0].taxable, lines[0].note) == (Decimal("19.00"), Decimal("100.00"),
                                                                   "Prices include tax.")
    assert total_with(Decimal("119.00"), lines, True) == Decimal("119.00")


def test_state_rate_wins_over_country_rate() -> None:
    assert choose_rate(RATES, TaxParty("US", "CA")).code == "us-ca"
    assert choose_rate(RATES, TaxParty("US", "OR")).code == "us"
    assert choose_rate(RATES, TaxParty("JP")) is None
    assert tax_lines(Decimal(10), "USD", RATES, TaxParty("JP"), "DE", False) == []


def test_exempt_and_reverse_charge_carry_their_notes() -> None:
    exempt = tax_lines(Decimal(100), "EUR", RATES, TaxParty("DE", exempt=True), "DE", False)
    assert exempt[0].amount == 0 and "exempt" in exempt[0].note
    b2b = tax_lines(Decimal(100), "EUR", RATES, TaxParty("FR", tax_id="FR40303265045"), "DE", False)
    assert (b2b[0].name, b2b[0].amount, b2b[0].note) == ("VAT reverse charge", Decimal("0.00"), REVERSE_CHARGE_NOTE)
    b2c = tax_lines(Decimal(100), "EUR", RATES, TaxParty("FR"), "DE", False)  # no VAT id: French VAT
    assert b2c[0].amount == Decimal("20.00")
    domestic = tax_lines(Decimal(100), "EUR", RATES, TaxParty("DE", tax_id="DE123456789"), "DE", False)
    assert domestic[0].amount == Decimal("19.00")  # same country: no reverse charge


@pytest.mark.parametrize(("raw", "field"), [
    ({"percentage": "19", "country": "DE"}, "name"),
    ({"name": "x", "percentage": 19.0, "country": "DE"}, "percentage"),
    ({"name": "x", "percentage": "190", "country": "DE"}, "percentage"),
    ({"name": "x", "percentage": "19", "country": "de"}, "country"),
])
def test_tax_rates_are_validated(raw: dict, field: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_tax_rate("t", raw)
    assert err.value.field == field


@pytest.mark.parametrize(("mode", "exclusive", "inclusive"), [
    # 10.00 at 1.25 %: 0.125 exclusive; inclusive 10.00 x 1.25 / 101.25 = 0.12345… (no tie)
    ("ROUND_HALF_UP", "0.13", "0.12"), ("ROUND_HALF_EVEN", "0.12", "0.12"), ("ROUND_HALF_DOWN", "0.12", "0.12"),
    ("ROUND_UP", "0.13", "0.13"), ("ROUND_DOWN", "0.12", "0.12"),
])
def test_tax_is_rounded_in_the_given_mode(mode: str, exclusive: str, inclusive: str) -> None:
    rate = parse_tax_rate("x", {"name": "T", "percentage": "1.25", "country": "DE"})
    assert str(tax_lines(Decimal("10.00"), "EUR", [rate], TaxParty("DE"), "DE", False, mode)[0].amount) == exclusive
    assert str(tax_lines(Decimal("10.00"), "EUR", [rate], TaxParty("DE"), "DE", True, mode)[0].amount) == inclusive


@given(st.decimals(min_value=0, max_value=10**9, places=2), st.decimals(min_value=0, max_value=100, places=3),
       st.booleans(), st.sampled_from(["USD", "JPY", "KWD"]), st.sampled_from(sorted(ROUNDING_MODES.values())))
def test_parts_always_add_up(subtotal: Decimal, pct: Decimal, inclusive: bool, currency: str, mode: str) -> None:
    from meterbill.domain.money import quantize

    subtotal = quantize(subtotal, currency)  # a subtotal is a sum of amounts already in minor units
    rate = parse_tax_rate("x", {"name": "T", "percentage": format(pct, "f"), "country": "DE"})
    lines = tax_lines(subtotal, currency, [rate], TaxParty("DE"), "DE", inclusive, mode)
    total = total_with(subtotal, lines, inclusive)
    if inclusive:
        assert lines[0].taxable + lines[0].amount == subtotal == total
    else:
        assert total == subtotal + lines[0].amount and lines[0].taxable == subtotal
    assert 0 <= lines[0].amount <= subtotal
