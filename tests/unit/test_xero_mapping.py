"""The pure part of the Xero module: tax spread with the residual on one line (USD, JPY, KWD),
4-decimal unit prices that multiply back exactly, the per-meter account mapping."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.xero import mapping
from integrations.xero.mapping import Account, parse_accounts, price, spread

D = Decimal


@pytest.mark.parametrize(("currency", "total", "weights", "expected"), [
    ("USD", "0.02", ["0.01", "0.01", "0.01"], ["0.00", "0.01", "0.01"]),   # each 0.0067 → 0.01; −0.01 on the first
    ("USD", "2.47", ["12.34", "0.66"], ["2.34", "0.13"]),
    ("JPY", "100", ["333", "333", "334"], ["33", "33", "34"]),
    ("JPY", "1", ["1", "1", "1"], ["1", "0", "0"]),                       # 0.33 → 0 each; the yen on the first
    ("KWD", "0.421", ["1.001", "2.002", "3.003"], ["0.070", "0.140", "0.211"]),
    ("USD", "1.00", ["10.00", "-2.00"], ["1.25", "-0.25"]),               # a discount line carries negative tax
    ("USD", "0.50", ["0.00", "0.00"], ["0.50", "0.00"]),                  # no weight: all on the first line
])
def test_spread_adds_up_exactly_with_the_residual_on_the_largest_line(currency: str, total: str, weights: list[str],
                                                                      expected: list[str]) -> None:
    shares = spread(D(total), [D(w) for w in weights], currency)
    assert shares == [D(e) for e in expected] and sum(shares) == D(total)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=40), st.integers(0, 10**6),
       st.sampled_from(["USD", "JPY", "KWD"]))
def test_spread_always_adds_up_to_the_total_in_whole_minor_units(cents: list[int], tax: int, currency: str) -> None:
    exp = {"USD": 2, "JPY": 0, "KWD": 3}[currency]
    shares = spread(D(tax).scaleb(-exp), [D(c).scaleb(-exp) for c in cents], currency)
    assert sum(shares) == D(tax).scaleb(-exp)
    assert all(s == s.quantize(D(1).scaleb(-exp)) for s in shares)


def test_spread_refuses_tax_without_a_line() -> None:
    with pytest.raises(ValueError):
        spread(D("1.00"), [], "USD")
    assert spread(D("0"), [], "USD") == []


@pytest.mark.parametrize(("amount", "quantity", "expected"), [
    ("12.34", "1234", ("1234", "0.01")),
    ("1.00", "3", ("1", "1.00")),               # 0.3333 × 3 = 0.9999: sent as 1 × 1.00
    ("0.12", "1000", ("1", "0.12")),            # 0.00012 has 5 decimals: sent as 1 × 0.12
    ("5.00", "0.5", ("0.5", "10")),
    ("7.00", None, ("1", "7.00")),
    ("7.00", "0", ("1", "7.00")),
    ("7.00", "1.23456", ("1", "7.00")),         # Xero keeps 4 decimals of a quantity
])
def test_price_multiplies_back_to_the_amount_exactly(amount: str, quantity: str | None,
                                                     expected: tuple[str, str]) -> None:
    q, unit = price(D(amount), D(quantity) if quantity is not None else None)
    assert (q, unit) == (D(expected[0]), D(expected[1])) and q * unit == D(amount)


def test_account_mapping_is_parsed_and_every_problem_named() -> None:
    accounts, problems = parse_accounts(json.dumps({"api_calls": {"account_code": "200", "tax_type": "OUTPUT2"},
                                                    "@fixed": {"account_code": "210"}, "*": "x"}))
    assert accounts == {"api_calls": Account("200", "OUTPUT2")}
    assert [p.field for p in problems] == ["account_codes.@fixed", "account_codes.*"]
    assert parse_accounts(None)[1][0].field == "account_codes"
    assert "not JSON" in parse_accounts("{")[1][0].message
    assert parse_accounts("[]")[1][0].field == "account_codes"


def test_lines_without_a_meter_use_their_type_then_the_fallback() -> None:
    accounts = {"@fixed": Account("210", "OUTPUT2"), "*": Account("260", "NONE")}
    assert mapping.account_for(accounts, mapping.line_key({"type": "fixed"})) == Account("210", "OUTPUT2")
    assert mapping.account_for(accounts, mapping.line_key({"type": "usage", "meter": "api"})) == Account("260", "NONE")
    assert mapping.account_for({}, "api") is None
