"""The amount grammar (``money.AmountRule``) and why its bounds hold: at the bounds, every
computation of a billing run stays exact -- checked by trapping ``Inexact`` in the money context
and in the default context that plain operators use (pure)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, localcontext
from typing import Any

import pytest

from meterbill.domain.adjustments import Discount, apply_discounts, credit_taxes
from meterbill.domain.charges import REGISTRY, Cell, PricingContext, Usage
from meterbill.domain import money
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import (CONTEXT, MONEY, PERCENT, PRICE_DIGITS, QUANTITY, UNIT_PRICE, check_amount,
                                    decimals, integer_digits, parse_amount, quantize)
from meterbill.domain.periods import Period
from meterbill.domain.plans import CHARGE_AMOUNTS, ROW_AMOUNTS, ROWS, check_plan_input, parse_plan
from meterbill.domain.rating import rate
from meterbill.domain.taxes import TaxParty, TaxRate, tax_lines

D = Decimal
UTC = timezone.utc
OCT = Period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), 0)
Q_MAX = D("9999999999999999.9999999999")  # the largest quantity ingest's range allows (|x| < 10^16, 10 decimals)


@pytest.fixture
def exact(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A context manager: inside it any rounding in the money context or in the default context
    raises ``Inexact`` -- except the one intended rounding, ``quantize`` to the minor unit."""
    monkeypatch.setattr(money, "CONTEXT", CONTEXT.copy())  # what quantize uses

    @contextmanager
    def trapped() -> Iterator[None]:
        CONTEXT.traps[Inexact] = True
        try:
            with localcontext() as default:
                default.traps[Inexact] = True
                yield
        finally:
            CONTEXT.traps[Inexact] = False

    return trapped


# -- the rules ---------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "rule", "currency"), [
    ("999999999999.99", MONEY, "USD"), ("999999999999", MONEY, "JPY"), ("1.2345", MONEY, "CLF"),
    ("12.30", MONEY, "USD"), ("12.300", MONEY, "USD"),  # trailing zeros do not count
    ("99999.999999", UNIT_PRICE, None), ("0.00000000001", UNIT_PRICE, None),
    ("9999999999999999.9999999999", QUANTITY, None), ("999.999999", PERCENT, None), ("0", MONEY, "USD"),
])
def test_values_within_the_rules(value: str, rule: Any, currency: str | None) -> None:
    assert parse_amount(value, "x", rule, currency) == D(value)


@pytest.mark.parametrize(("value", "rule", "currency", "problem"), [
    ("1000000000000", MONEY, "USD", "has 13 digits before the decimal point; an amount has at most 12"),
    ("1" + "0" * 49, MONEY, "USD", "has 50 digits before the decimal point"),
    ("12.345", MONEY, "USD", "has 3 decimals; an amount in USD has at most 2"),
    ("1.5", MONEY, "JPY", "has 1 decimals; an amount in JPY has at most 0"),
    ("100000", UNIT_PRICE, None, "a unit price has at most 5"),
    ("0.000000000001", UNIT_PRICE, None, "a unit price has at most 11"),
    ("10000000000000000", QUANTITY, None, "a quantity has at most 16"),
    ("0.00000000001", QUANTITY, None, "a quantity has at most 10"),
    ("19.1234567", PERCENT, None, "a percentage has at most 6"),
    ("-1", MONEY, "USD", "must not be negative"),
])
def test_values_beyond_the_rules_name_the_field_and_the_bound(value: str, rule: Any, currency: str | None,
                                                              problem: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_amount(value, "charges[0].tiers[1].unit_amount", rule, currency)
    assert err.value.field == "charges[0].tiers[1].unit_amount"
    assert problem in err.value.problem


def test_digit_counts() -> None:
    assert [(integer_digits(D(v)), decimals(D(v))) for v in ("0", "0.000", "1.50", "1E+3", "123.456", "-0.05")] \
        == [(0, 0), (0, 0), (1, 1), (4, 0), (3, 3), (0, 2)]


def test_a_currency_is_needed_for_money() -> None:
    with pytest.raises(ValueError):
        check_amount(D(1), "x", MONEY)


# -- every amount of every charge model is checked ---------------------------------------
EXAMPLES: dict[str, dict[str, Any]] = {
    "per_unit": {"unit_amount": "1", "free_units": "1", "min_amount": "1"},
    "package": {"package_size": "10", "package_amount": "1", "free_units": "1"},
    "graduated": {"tiers": [{"up_to": "10", "unit_amount": "1", "flat_amount": "1"}, {"up_to": None, "unit_amount": "1"}]},
    "volume": {"tiers": [{"up_to": "10", "unit_amount": "1", "flat_amount": "1"}, {"up_to": None, "unit_amount": "1"}]},
    "percentage": {"rate": "1", "fixed_amount": "1", "per_event_min": "1", "per_event_max": "2",
                   "free_units_per_events": "1"},
    "graduated_percentage": {"tiers": [{"up_to": "10", "rate": "1", "flat_amount": "1"}, {"up_to": None, "rate": "1"}]},
    "matrix": {"dimensions": ["r"], "prices": [{"match": {"r": "eu"}, "unit_amount": "1"}], "default_unit_amount": "1"},
    "time_of_use": {"default_unit_amount": "1", "holidays": ["2026-12-25"], "holiday_unit_amount": "1", "windows": [
        {"name": "peak", "days": ["mon"], "from": "08:00", "to": "20:00", "unit_amount": "1"}]},
}


def _decimal_keys(doc: Any, path: str = "") -> Iterator[str]:
    """Keys (``tiers[].up_to``) whose value is a decimal string, anywhere in a charge."""
    for key, value in doc.items():
        if isinstance(value, str) and value.replace(".", "", 1).isdigit():
            yield f"{path}{key}"
        elif isinstance(value, list):
            for row in value:
                if isinstance(row, dict):
                    yield from _decimal_keys(row, f"{key}[].")


def test_the_examples_cover_every_registered_model() -> None:
    assert set(EXAMPLES) == set(REGISTRY)
    for name, example in EXAMPLES.items():
        REGISTRY[name].parse({"meter": "m", "model": name, **example}, "c")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_amount_key_of_every_model_follows_a_rule(name: str) -> None:
    charge = {"meter": "m", "model": name, **EXAMPLES[name]}
    for key in _decimal_keys(charge):
        rows, _, field = key.rpartition("[].")
        assert (field in ROW_AMOUNTS and rows in ROWS) if rows else field in CHARGE_AMOUNTS, key
    big = "1" + "0" * 49
    for key in _decimal_keys(charge):  # and a 50-digit value there is refused, naming the key
        doc = copy.deepcopy(charge)
        rows, _, field = key.rpartition("[].")
        (doc[rows][0] if rows else doc)[field] = big
        with pytest.raises(InvalidField) as err:
            check_plan_input({"currency": "USD", "charges": [doc]}, "USD")
        assert err.value.field == f"charges[0].{rows + '[0].' if rows else ''}{field}"


# -- exact at the bounds -----------------------------------------------------------------
# Unit prices spanning PRICE_DIGITS (11) digits: the largest with 5 before the point, the most
# precise with 6 after it; money at 12 digits; quantities at ingest's limit.
P_WIDE, P_FINE, FLAT = "99999.999999", "0.000001", "999999999999.99"
AT_BOUNDS: dict[str, dict[str, Any]] = {
    "per_unit": {"unit_amount": P_WIDE, "min_amount": FLAT},
    "package": {"package_size": "0.0000000001", "package_amount": "0.0000099999"},
    "graduated": {"tiers": [{"up_to": "0.0000000001", "unit_amount": P_FINE, "flat_amount": FLAT},
                            {"up_to": "9999999999999998.9999999999", "unit_amount": P_WIDE, "flat_amount": FLAT},
                            {"up_to": None, "unit_amount": "12345.123456", "flat_amount": FLAT}]},
    "volume": {"tiers": [{"up_to": "1", "unit_amount": P_FINE}, {"up_to": None, "unit_amount": P_WIDE,
                                                                 "flat_amount": FLAT}]},
    "percentage": {"rate": "999.999999", "fixed_amount": "9.999", "per_event_min": "0.001", "per_event_max": "9.999",
                   "free_units_per_events": "1"},
    "graduated_percentage": {"tiers": [{"up_to": "1", "rate": "0.000001", "flat_amount": FLAT},
                                       {"up_to": None, "rate": "999.999999", "flat_amount": FLAT}]},
    "matrix": {"dimensions": ["r"], "prices": [{"match": {"r": "eu"}, "unit_amount": P_WIDE}],
               "default_unit_amount": P_FINE},
    "time_of_use": {"default_unit_amount": P_FINE, "windows": [
        {"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "08:00", "to": "20:00",
         "unit_amount": P_WIDE}]},
}
HALF = (Q_MAX / 2).quantize(D("1E-10"))
VALUES = {D("9999999999999.9999999999"): 999, D("0.0000000999"): 10**16 - 1000}
AT_MAX = Usage(Q_MAX, 10**16 - 1, groups={(("r", "eu"),): HALF, (("r", "us"),): Q_MAX - HALF},
               buckets=((1_790_812_800, HALF), (1_790_856_000, Q_MAX - HALF)),  # Oct 1, 00:00 and 12:00
               cells=(Cell(1_790_812_800, 10**16 - 1, Q_MAX, None),))
Q_VALUES, N_VALUES = sum((v * n for v, n in VALUES.items()), D(0)), sum(VALUES.values())
WITH_VALUES = Usage(Q_VALUES, N_VALUES, values=VALUES, cells=(Cell(1_790_812_800, N_VALUES, Q_VALUES, VALUES),))


@pytest.mark.parametrize("name", sorted(AT_BOUNDS))
def test_every_model_prices_the_largest_usage_exactly_at_the_bounds(name: str, exact: Any) -> None:
    raw = {"currency": "KWD", "charges": [{"meter": "m", "model": name, **AT_BOUNDS[name]}]}
    check_plan_input(raw, "KWD")  # the bounds are allowed ...
    plan = parse_plan("p", raw)
    charge = plan.charges[0]
    usage = WITH_VALUES if name == "percentage" else AT_MAX
    with exact():  # ... and nothing is rounded before the one rounding to the minor unit
        priced = charge.model.price(usage, charge.params, PricingContext("KWD", "UTC"))
        line = rate(plan, {"m": usage}, OCT, OCT, PricingContext("KWD", "UTC")).lines[-1]
    assert line.amount == quantize(priced.amount if priced.amount > charge.min_amount else charge.min_amount, "KWD")
    assert line.amount < D("1.000001E21")  # 10^16 x the largest unit price, and flat fees


def test_a_package_costs_less_than_the_largest_unit_price_per_unit() -> None:
    charge = {"meter": "m", "model": "package", "package_size": "0.5", "package_amount": "50000"}
    with pytest.raises(InvalidField) as err:
        check_plan_input({"currency": "USD", "charges": [charge]}, "USD")
    assert err.value.field == "charges[0].package_amount" and "100000 per unit" in err.value.problem
    check_plan_input({"currency": "USD", "charges": [{**charge, "package_amount": "49999.99"}]}, "USD")


def test_a_span_over_11_digits_is_refused() -> None:
    charge = {"meter": "m", "model": "graduated", "tiers": [{"up_to": "1", "unit_amount": "0.0000001"},
                                                           {"up_to": None, "unit_amount": "99999"}]}
    with pytest.raises(InvalidField) as err:
        check_plan_input({"currency": "USD", "charges": [charge]}, "USD")
    assert err.value.field == "charges[0].tiers[1].unit_amount"
    assert "span 12 digits" in err.value.problem and str(PRICE_DIGITS) in err.value.problem


def test_an_invoice_of_many_lines_at_the_bounds_sums_taxes_and_discounts_exactly(exact: Any) -> None:
    charges = [{"meter": f"m{i}", "model": "per_unit", "unit_amount": P_WIDE} for i in range(100)]
    raw = {"currency": "CLF", "base_fee": "999999999999.9999", "minimum_commitment": "999999999999.9999",
           "charges": charges}
    check_plan_input(raw, "CLF")
    plan = parse_plan("p", raw)
    ctx = PricingContext("CLF", "UTC")
    party = TaxParty("US")
    with exact():
        rated = rate(plan, {f"m{i}": Usage.of(Q_MAX) for i in range(100)}, OCT, OCT, ctx)
        (discount,) = apply_discounts([(None, rated.subtotal)], [Discount("d", "percentage", D("12.345678"), "forever")],
                                      "CLF")
        (tax,) = tax_lines(rated.subtotal - discount.amount, "CLF", [TaxRate("t", "T", D("99.999999"), "US")],
                           party, None, False)
        credit_taxes(rated.subtotal, {"taxes": [{"percentage": "99.999999"}]}, "CLF")
    assert rated.subtotal == sum((line.amount for line in rated.lines), D(0))
    assert integer_digits(rated.subtotal) <= 24


def test_tax_on_a_large_subtotal_is_exact() -> None:
    """A plain ``subtotal * percentage`` ran in the default 28-digit context and rounded: the tax on
    6,000,000,000,000,000,945,294.07 at 19.123457 % came out one cent high."""
    subtotal, pct = D("6000000000000000945294.07"), D("19.123457")
    (tax,) = tax_lines(subtotal, "USD", [TaxRate("t", "T", pct, "US")], TaxParty("US"), None, False)
    wide = Context(prec=100)
    assert tax.amount == wide.divide(wide.multiply(subtotal, pct), D(100)).quantize(D("0.01"), ROUND_HALF_UP, wide)
    assert tax.amount == D("1147407420000000180772.90")
    (discount,) = apply_discounts([(None, subtotal)], [Discount("d", "percentage", pct, "forever")], "USD")
    assert discount.amount == tax.amount
    ((_, given_back),) = credit_taxes(subtotal, {"taxes": [{"percentage": str(pct)}]}, "USD")
    assert given_back == tax.amount
