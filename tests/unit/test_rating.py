"""Rating with plan terms (pure): free allowance, minimums, commitment, base fee timing, and
the invariant that an invoice's total is the sum of its rounded lines."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain.charges import PricingContext, Usage
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import ROUNDING_MODES, quantize
from meterbill.domain.periods import Period
from meterbill.domain.contracts import effective_plan
from meterbill.domain.plans import parse_plan
from meterbill.domain.rating import Segment, rate, rate_segments

UTC = timezone.utc
OCT = Period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), 0)
NOV = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), 1)
HALF_OCT = Period(datetime(2026, 10, 16, 12, tzinfo=UTC), OCT.end, 0)  # 15.5 of 31 days = 1/2
CTX = PricingContext("USD", "UTC")


def plan(**extra: Any) -> Any:
    charges = extra.pop("charges", [{"meter": "calls", "model": "per_unit", "unit_amount": "0.10"}])
    return parse_plan("p", {"currency": "USD", "base_fee": "30.00", "charges": charges, **extra})


def amounts(rated: Any) -> list[tuple[str, str]]:
    return [(ln.kind, str(ln.amount)) for ln in rated.lines]


def test_free_allowance_is_deducted_before_pricing() -> None:
    p = plan(charges=[{"meter": "calls", "model": "graduated", "free_units": "100",
                       "tiers": [{"up_to": "50", "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]}])
    r = rate(p, {"calls": Usage.of(Decimal(180))}, OCT, OCT, CTX)  # 80 billable: 50 x 1 + 30 x 0.5
    assert amounts(r)[1] == ("usage", "65.00")
    assert r.lines[1].quantity == 180 and r.lines[1].free_units == 100
    assert rate(p, {"calls": Usage.of(Decimal(60))}, OCT, OCT, CTX).lines[1].amount == 0


@pytest.mark.parametrize(("units", "expected"), [
    ("350", "15.00"),  # ceil((350 - 100) / 100) = 3 packages
    ("201", "10.00"),  # Lago, "Package": 201 units with the first 100 free = $10
    ("200", "5.00"), ("101", "5.00"), ("100", "0.00"), ("0", "0.00"),
])
def test_package_free_units_are_deducted_once(units: str, expected: str) -> None:
    # https://getlago.com/docs/guide/plans/charges/charge-models/package: $5 per 100 units,
    # first 100 free. The allowance is a charge term: the rating deducts it, the model never sees it.
    p = plan(charges=[{"meter": "calls", "model": "package", "package_size": "100", "package_amount": "5.00",
                       "free_units": "100"}])
    line = rate(p, {"calls": Usage.of(Decimal(units))}, OCT, OCT, CTX).lines[1]
    assert str(line.amount) == expected
    assert line.quantity == Decimal(units) and line.free_units == 100
    assert sum((part.amount for part in line.parts), Decimal(0)) == line.amount_unrounded


@settings(max_examples=200)
@given(st.decimals(min_value="0.001", max_value=10**4, places=3), st.decimals(min_value=0, max_value=100, places=2),
       st.decimals(min_value=0, max_value=10**6, places=3), st.decimals(min_value=0, max_value=10**6, places=3))
def test_package_with_free_units_bills_ceil_of_the_paid_units(size: Decimal, price: Decimal, free: Decimal,
                                                               q: Decimal) -> None:
    import math
    from fractions import Fraction

    p = plan(charges=[{"meter": "gb", "model": "package", "package_size": str(size), "package_amount": str(price),
                       "free_units": str(free)}])
    line = rate(p, {"gb": Usage.of(q)}, OCT, OCT, CTX).lines[1]
    packages = math.ceil(max(Fraction(0), Fraction(q) - Fraction(free)) / Fraction(size))
    assert line.amount_unrounded == packages * price


def test_no_model_reads_the_charge_level_free_units() -> None:
    # free_units is applied once, by the rating, for every model that accepts it: no model's own
    # parameters change with it (else the allowance would be taken off twice).
    from meterbill.domain.charges import REGISTRY
    from tests.unit.test_charge_models import VALID
    from tests.unit.test_time_of_use import PEAK

    samples = {**VALID, "per_unit": {"unit_amount": "1"},
               "graduated": {"tiers": [{"up_to": None, "unit_amount": "1"}]},
               "graduated_percentage": {"tiers": [{"up_to": None, "rate": "1"}]},
               "time_of_use": {"windows": [PEAK], "default_unit_amount": "0.08"}}
    for name, model in REGISTRY.items():
        base = {k: v for k, v in samples[name].items() if k != "free_units"}
        assert model.parse({**base, "free_units": "100"}, "c") == model.parse(base, "c"), name


def test_usage_lines_carry_the_charge_unit_else_the_meter_unit() -> None:
    from meterbill.domain.invoices import build_invoice

    p = plan(charges=[{"meter": m, "model": "per_unit", "unit_amount": "1", **extra} for m, extra in [
        ("a", {"unit": "requests"}), ("b", {}), ("c", {}), ("d", {"free_units": "10"})]])
    r = rate(p, {}, OCT, OCT, CTX, meter_units={"a": "calls", "b": "GB", "d": "tokens"})
    assert [ln.unit for ln in r.lines] == [None, "requests", "GB", None, "tokens"]
    doc = build_invoice(invoice_id="in_1", number=None, customer={"id": "c", "name": "C"}, plan_code="p",
                        plan_version=1, period=OCT, rated=r, created_at="2026-11-01T00:00:00Z")
    assert [(ln.get("unit"), ln.get("free_units")) for ln in doc["lines"]] == [
        (None, None), ("requests", None), ("GB", None), (None, None), ("tokens", "10")]


def test_per_charge_minimum_and_its_proration() -> None:
    p = plan(charges=[{"meter": "calls", "model": "per_unit", "unit_amount": "0.10", "min_amount": "20"}])
    full = rate(p, {"calls": Usage.of(Decimal(50))}, OCT, OCT, CTX)
    assert amounts(full) == [("base_fee", "30.00"), ("usage", "20.00")]
    assert full.lines[1].parts[-1].label == "minimum charge" and full.lines[1].parts[-1].amount == 15
    half = rate(p, {"calls": Usage.of(Decimal(50))}, HALF_OCT, OCT, CTX)
    assert amounts(half) == [("base_fee", "15.00"), ("usage", "10.00")]
    above = rate(p, {"calls": Usage.of(Decimal(500))}, OCT, OCT, CTX)
    assert above.lines[1].amount == 50 and above.lines[1].parts == ()


def test_minimum_commitment_true_up() -> None:
    p = plan(minimum_commitment="100.00")
    short = rate(p, {"calls": Usage.of(Decimal(123))}, OCT, OCT, CTX)  # 30 + 12.30 = 42.30
    assert amounts(short)[-1] == ("minimum_commitment", "57.70") and short.total == 100
    enough = rate(p, {"calls": Usage.of(Decimal(1000))}, OCT, OCT, CTX)
    assert [k for k, _ in amounts(enough)] == ["base_fee", "usage"] and enough.total == 130
    half = rate(p, {}, HALF_OCT, OCT, CTX)
    assert half.total == 50  # commitment prorated with the period


def test_base_fee_in_advance() -> None:
    p = plan(base_fee_timing="advance")
    first = rate(p, {}, HALF_OCT, OCT, CTX, first=True, next_full=NOV)
    assert [(ln.description, str(ln.amount), ln.covers) for ln in first.lines if ln.kind == "base_fee"] == [
        ("p base fee (first period)", "15.00", None), ("p base fee (next period, in advance)", "30.00", NOV)]
    later = rate(p, {}, OCT, OCT, CTX, first=False, next_full=NOV)
    assert amounts(later) == [("base_fee", "30.00"), ("usage", "0.00")]


MODES = ("half_up", "half_even", "half_down", "up", "down")


@pytest.mark.parametrize(("currency", "unit_amount", "units", "expected"), [
    # 125 x 0.001 = 0.125 USD: a tie; half_even goes to the even 2, half_down/down towards zero
    ("USD", "0.001", 125, ("0.13", "0.12", "0.12", "0.13", "0.12")),
    ("USD", "0.001", 135, ("0.14", "0.14", "0.13", "0.14", "0.13")),  # 0.135: the even neighbour is 4
    ("USD", "0.001", 121, ("0.12", "0.12", "0.12", "0.13", "0.12")),  # 0.121: only 'up' leaves 0.12
    ("USD", "0.001", 127, ("0.13", "0.13", "0.13", "0.13", "0.12")),  # 0.127: only 'down' stays at 0.12
    ("JPY", "0.5", 5, ("3", "2", "2", "3", "2")),                     # 2.5 JPY, no minor unit
    ("JPY", "0.5", 7, ("4", "4", "3", "4", "3")),                     # 3.5 JPY
    ("KWD", "0.0005", 5, ("0.003", "0.002", "0.002", "0.003", "0.002")),  # 0.0025 KWD, 3 decimals
])
def test_rounding_mode_of_the_plan_rounds_each_usage_line(currency: str, unit_amount: str, units: int,
                                                           expected: tuple[str, ...]) -> None:
    for mode, want in zip(MODES, expected):
        p = parse_plan("p", {"currency": currency, "rounding": mode,
                             "charges": [{"meter": "calls", "model": "per_unit", "unit_amount": unit_amount}]})
        r = rate(p, {"calls": Usage.of(Decimal(units))}, OCT, OCT, PricingContext(currency, "UTC"))
        assert (mode, str(r.lines[0].amount), str(r.total)) == (mode, want, want)


def test_rounding_mode_applies_to_base_fee_and_commitment_true_up() -> None:
    # half of October: base fee 0.25 x 1/2 = 0.125; commitment 0.45 x 1/2 = 0.225
    for mode, fee, commitment in [("half_up", "0.13", "0.23"), ("half_even", "0.12", "0.22"),
                                  ("half_down", "0.12", "0.22"), ("up", "0.13", "0.23"), ("down", "0.12", "0.22")]:
        p = parse_plan("p", {"currency": "USD", "base_fee": "0.25", "minimum_commitment": "0.45", "rounding": mode})
        r = rate(p, {}, HALF_OCT, OCT, CTX)
        assert [(ln.kind, str(ln.amount)) for ln in r.lines] == [
            ("base_fee", fee), ("minimum_commitment", str(Decimal(commitment) - Decimal(fee)))], mode
        assert str(r.total) == commitment


def test_default_rounding_is_half_up() -> None:
    assert plan().rounding == ROUNDING_MODES["half_up"] == "ROUND_HALF_UP"


# -- a period split at plan changes: Oct 16 12:00 halves October (15.5 of 31 days each side) --
FIRST_HALF = Period(OCT.start, HALF_OCT.start, 0)
DAY_11 = datetime(2026, 10, 11, tzinfo=UTC)


def cheap(**extra: Any) -> Any:  # plan A
    return parse_plan("a", {"currency": "USD", "base_fee": "30.00", "charges": [
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.10"}], **extra})


def rich(**extra: Any) -> Any:   # plan B
    return parse_plan("b", {"currency": "USD", "base_fee": "60.00", "charges": [
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.05"}], **extra})


def described(rated: Any) -> list[tuple[str | None, str, str, Any]]:
    return [(ln.plan, ln.kind, str(ln.amount), ln.covers) for ln in rated.lines]


def test_split_period_rates_each_side_with_its_plan_and_its_usage() -> None:
    r = rate_segments([Segment(cheap(), FIRST_HALF, {"calls": Usage.of(Decimal(100))}),
                       Segment(rich(), HALF_OCT, {"calls": Usage.of(Decimal(300))})], OCT, CTX, first=False)
    # A: 30 x 1/2 = 15.00, 100 x 0.10 = 10.00; B: 60 x 1/2 = 30.00, 300 x 0.05 = 15.00
    assert described(r) == [("a", "base_fee", "15.00", FIRST_HALF), ("a", "usage", "10.00", FIRST_HALF),
                            ("b", "base_fee", "30.00", HALF_OCT), ("b", "usage", "15.00", HALF_OCT)]
    assert r.total == r.subtotal == Decimal("70.00") and r.plan.code == "b"
    assert [ln.proration for ln in r.lines if ln.kind == "base_fee"] == [Decimal("0.5"), Decimal("0.5")]


def test_uneven_split_rounds_each_line_once() -> None:
    r = rate_segments([Segment(cheap(), Period(OCT.start, DAY_11, 0), {}),
                       Segment(rich(), Period(DAY_11, OCT.end, 0), {})], OCT, CTX)
    # 30 x 10/31 = 9.677… -> 9.68; 60 x 21/31 = 40.645… -> 40.65
    assert [str(ln.amount) for ln in r.lines if ln.kind == "base_fee"] == ["9.68", "40.65"]
    assert r.total == Decimal("50.33")


def test_minimum_commitment_and_charge_minimum_are_prorated_per_segment() -> None:
    a = cheap(minimum_commitment="100.00")
    b = parse_plan("b", {"currency": "USD", "base_fee": "60.00", "charges": [
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.05", "min_amount": "40"}]})
    r = rate_segments([Segment(a, FIRST_HALF, {"calls": Usage.of(Decimal(100))}),
                       Segment(b, HALF_OCT, {"calls": Usage.of(Decimal(300))})], OCT, CTX)
    # A: 15.00 + 10.00 = 25.00 < 100 x 1/2 = 50.00 -> true-up 25.00;
    # B: 300 x 0.05 = 15.00 < minimum 40 x 1/2 = 20.00 -> 20.00; no commitment
    assert described(r) == [("a", "base_fee", "15.00", FIRST_HALF), ("a", "usage", "10.00", FIRST_HALF),
                            ("a", "minimum_commitment", "25.00", FIRST_HALF),
                            ("b", "base_fee", "30.00", HALF_OCT), ("b", "usage", "20.00", HALF_OCT)]
    assert r.total == Decimal("100.00")


def test_advance_fee_after_a_mid_period_change_credits_the_old_plan_and_charges_the_new() -> None:
    a, b = cheap(base_fee_timing="advance"), rich(base_fee_timing="advance")
    r = rate_segments([Segment(a, FIRST_HALF, {}), Segment(b, HALF_OCT, {})], OCT, CTX, first=False,
                      next_full=NOV, prepaid=a)  # October's fee was billed in advance under A: 30.00
    assert [(ln.plan, ln.description, str(ln.amount), ln.covers) for ln in r.lines if ln.kind == "base_fee"] == [
        ("a", "a base fee credit (billed in advance, plan changed)", "-15.00", HALF_OCT),  # 30 x 1/2 unused
        ("b", "b base fee (plan change)", "30.00", HALF_OCT),                              # 60 x 1/2
        ("b", "b base fee (next period, in advance)", "60.00", NOV)]                       # plan at the end
    assert r.total == Decimal("75.00")
    # a change back to the prepaid plan needs no correction; one at the period start does
    assert rate_segments([Segment(a, OCT, {})], OCT, CTX, first=False, next_full=NOV, prepaid=a).total == 30
    at_start = rate_segments([Segment(b, OCT, {})], OCT, CTX, first=False, next_full=NOV, prepaid=a)
    assert [str(ln.amount) for ln in at_start.lines if ln.kind == "base_fee"] == ["-30.00", "60.00", "60.00"]


def test_arrears_plan_replacing_an_advance_plan_credits_the_prepaid_part() -> None:
    r = rate_segments([Segment(cheap(base_fee_timing="advance"), FIRST_HALF, {}), Segment(rich(), HALF_OCT, {})],
                      OCT, CTX, first=False, next_full=NOV, prepaid=cheap(base_fee_timing="advance"))
    # A (advance, prepaid 30.00) -> B (arrears): credit 15.00, B's half 30.00 in arrears, nothing in advance
    assert [str(ln.amount) for ln in r.lines if ln.kind == "base_fee"] == ["-15.00", "30.00"]


def test_overridden_terms_mark_their_lines() -> None:
    doc = {"currency": "USD", "base_fee": "30.00", "charges": [
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.10"},
        {"meter": "gb", "model": "per_unit", "unit_amount": "1"}]}
    p = effective_plan("p", doc, {"base_fee": "25.00", "charges": {"calls": {"unit_amount": "0.02"}}})
    r = rate(p, {"calls": Usage.of(Decimal(1000)), "gb": Usage.of(Decimal(2))}, OCT, OCT, CTX)
    # 25.00 (override) + 1000 x 0.02 (override) = 20.00 + 2 x 1 = 2.00
    assert [(str(ln.amount), ln.override) for ln in r.lines] == [("25.00", True), ("20.00", True), ("2.00", False)]


@pytest.mark.parametrize(("raw", "field"), [
    ({"rounding": "bankers"}, "rounding"),
    ({"rounding": None}, "rounding"),
    ({"charges": [{"meter": "c", "model": "time_of_use", "free_units": "5", "default_unit_amount": "1",
                   "windows": [{"name": "w", "days": ["mon"], "from": "00:00", "to": "24:00", "unit_amount": "1"}]}]},
     "charges[0].free_units"),
    ({"base_fee_timing": "upfront"}, "base_fee_timing"),
    ({"minimum_commitment": 100.0}, "minimum_commitment"),
    ({"charges": [{"meter": "c", "model": "per_unit", "unit_amount": "1", "min_amount": "-1"}]}, "charges[0].min_amount"),
])
def test_plan_terms_are_validated(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_plan("p", {"currency": "USD", **raw})
    assert err.value.field == field


@settings(max_examples=300)
@given(st.lists(st.decimals(min_value=0, max_value=10**7, places=4, allow_nan=False), min_size=3, max_size=3),
       st.sampled_from(["USD", "JPY", "KWD"]), st.sampled_from(["0", "5000"]), st.booleans(), st.sampled_from(MODES))
def test_total_is_the_sum_of_rounded_lines(qs: list[Decimal], currency: str, commitment: str, half: bool,
                                           mode: str) -> None:
    p = parse_plan("p", {"currency": currency, "base_fee": "19.99", "minimum_commitment": commitment,
                         "rounding": mode, "charges": [
        {"meter": "a", "model": "per_unit", "unit_amount": "0.0013"},
        {"meter": "b", "model": "graduated", "min_amount": "3.333",
         "tiers": [{"up_to": "1000", "unit_amount": "0.017"}, {"up_to": None, "unit_amount": "0.0011"}]},
        {"meter": "c", "model": "volume", "tiers": [{"up_to": "500", "unit_amount": "0.3"},
                                                    {"up_to": None, "unit_amount": "0.2", "flat_amount": "7"}]}]})
    usages = {m: Usage.of(q) for m, q in zip("abc", qs)}
    r = rate(p, usages, HALF_OCT if half else OCT, OCT, PricingContext(currency, "UTC"))
    exponent = {"USD": -2, "JPY": 0, "KWD": -3}[currency]
    assert all(ln.amount.as_tuple().exponent == exponent for ln in r.lines)  # each line rounded once
    assert r.total == r.subtotal == sum(ln.amount for ln in r.lines)
    assert r.total >= quantize(Decimal(commitment) / (2 if half else 1), currency, ROUNDING_MODES[mode])
    for ln in r.lines:  # each line is its unrounded amount rounded in the plan's mode
        assert ln.kind == "minimum_commitment" or ln.amount == quantize(ln.amount_unrounded, currency,
                                                                         ROUNDING_MODES[mode])
