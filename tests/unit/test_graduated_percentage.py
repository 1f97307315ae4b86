"""meterbill.domain.charges: graduated_percentage (a rate per tier of a summed amount, plus a
flat fee per tier), in the model, in a plan, on an invoice line and its rendering."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain.charges import REGISTRY, PricingContext, TierLine, Usage
from meterbill.domain.errors import InvalidField
from meterbill.domain.periods import Period
from meterbill.domain.plans import parse_plan
from meterbill.domain.rating import rate

D = Decimal
PATH = "charges[0]"
CTX = PricingContext("USD", "UTC")
MODEL = REGISTRY["graduated_percentage"]
GRADUATED = REGISTRY["graduated"]
UTC = timezone.utc
OCT = Period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), 0)


def tier(up_to: str | None, pct: str, flat: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"up_to": up_to, "rate": pct}
    if flat is not None:
        raw["flat_amount"] = flat
    return raw


def params(*tiers: dict[str, Any]) -> Any:
    return MODEL.parse({"model": "graduated_percentage", "tiers": list(tiers)}, PATH)


# Lago, "Graduated percentage": tiers 0-1,000 at 1 % + $200, 1,001-10,000 at 2 % + $300,
# 10,001+ at 3 % + $400.
# https://getlago.com/docs/guide/plans/charges/charge-models/graduated-percentage
LAGO = params(tier("1000", "1", "200"), tier("10000", "2", "300"), tier(None, "3", "400"))


def price(amount: str, p: Any = LAGO) -> Any:
    return MODEL.price(Usage(D(amount), 1), p, CTX)


def test_lago_example() -> None:
    # "A first transaction at $500 would cost (500 units x 1%) + $200 flat fee = $205.00; a second
    # transaction at $550 would cost [(500 units x 1%) + (50 units x 2%)] + $300 flat fee = $306.00;
    # a third transaction at $4,000 would cost (4,000 x 2%) = $80.00." Each transaction costs what
    # it adds to the period's amount: the amounts at 500, 1,050 and 5,050.
    first, second, third = price("500").amount, price("1050").amount, price("5050").amount
    assert first == D("205")
    assert second - first == D("306")
    assert third - second == D("80")


def test_tier_lines_carry_the_rate() -> None:
    priced = price("1050")
    assert priced.tiers == (
        TierLine(0, D(0), D(1000), D(1000), D("0.01"), D(200), D(210), D(1)),
        TierLine(1, D(1000), D(10000), D(50), D("0.02"), D(300), D(301), D(2)),
    )
    assert priced.amount == D(511) and priced.unit_amount is None
    above = price("12000").tiers[-1]
    assert (above.index, above.lower, above.upper, above.units, above.rate, above.amount) == (
        2, D(10000), None, D(2000), D(3), D(460))


def test_zero_usage_costs_nothing_even_with_flat_fees() -> None:
    # lago-api charges the first tier's flat fee at 0; we charge no tier that received nothing,
    # as graduated does (a fixed fee belongs in the plan's base fee).
    assert price("0").amount == 0 and price("0").tiers == ()


@pytest.mark.parametrize(("tiers", "field", "problem"), [
    (None, "tiers", "must be a non-empty list of tiers"),
    ([], "tiers", "must contain at least one tier"),
    ([{"up_to": None}], "tiers[0].rate", "is required"),
    ([tier("10", "1"), {"up_to": None, "unit_amount": "1"}], "tiers[1].unit_amount",
     "is not a tier field; expected up_to, rate, flat_amount"),
    ([tier("10", "1"), tier("5", "2"), tier(None, "3")], "tiers[1].up_to",
     "must be greater than the previous tier's up_to (10)"),
    ([tier("10", "1")], "tiers[0].up_to", None),
    ([tier("10", "-1"), tier(None, "2")], "tiers[0].rate", "must not be negative"),
    ([tier(None, "2", "-5")], "tiers[0].flat_amount", "must not be negative"),
    ([tier(None, 2.5)], "tiers[0].rate", None),  # type: ignore[arg-type]  # a JSON float
])
def test_parse_errors_name_the_field(tiers: Any, field: str, problem: str | None) -> None:
    raw = {"model": "graduated_percentage"} if tiers is None else {"tiers": tiers}
    with pytest.raises(InvalidField) as info:
        MODEL.parse(raw, PATH)
    assert info.value.field == f"{PATH}.{field}"
    if problem is not None:
        assert info.value.problem == problem


def test_plan_validation_names_the_field() -> None:
    def plan(charge: dict[str, Any]) -> Any:
        return parse_plan("pay", {"currency": "USD", "charges": [
            {"meter": "payments", "model": "graduated_percentage", **charge}]})

    with pytest.raises(InvalidField) as info:
        plan({"tiers": [tier("1000", "1"), {"up_to": None, "flat_amount": "1"}]})
    assert info.value.field == "charges[0].tiers[1].rate"
    with pytest.raises(InvalidField) as info:
        plan({"tiers": [tier(None, "1")], "free_units": "100"})
    assert info.value.field == "charges[0].free_units"
    assert "a first tier with rate 0" in info.value.problem
    assert plan({"tiers": [tier(None, "1")], "min_amount": "5"}).charges[0].min_amount == 5


def test_invoice_line_shows_the_tiers_with_their_rates() -> None:
    from meterbill.domain.invoices import build_invoice
    from meterbill.rendering.view import invoice_view

    p = parse_plan("pay", {"currency": "USD", "charges": [
        {"meter": "payments", "model": "graduated_percentage", "tiers": [
            tier("1000", "1", "200"), tier("10000", "2", "300"), tier(None, "3", "400")]}]})
    rated = rate(p, {"payments": Usage(D("1050"), 2)}, OCT, OCT, CTX)
    (line,) = rated.lines
    assert (line.amount, line.quantity) == (D("511.00"), D("1050"))
    doc = build_invoice(invoice_id="in_1", number=None, customer={"id": "c", "name": "C"}, plan_code="pay",
                        plan_version=1, period=OCT, rated=rated, created_at="2026-11-01T00:00:00Z")
    assert [(t["rate"], t["unit_amount"], t["amount"]) for t in doc["lines"][0]["tiers"]] == [
        ("1", "0.01", "210.00"), ("2", "0.02", "301.00")]
    shown = invoice_view(doc).lines[0]
    assert shown.unit_price == "see tiers"
    assert [t.text for t in shown.tiers] == ["Tier 1 (0 – 1,000): 1,000 × 1% + 200.00 flat = 210.00",
                                             "Tier 2 (1,000 – 10,000): 50 × 2% + 300.00 flat = 301.00"]


# --- properties ---------------------------------------------------------------------

rates = st.decimals(min_value=0, max_value=50, places=3)
flats = st.decimals(min_value=0, max_value=100, places=2)
sums = st.decimals(min_value=0, max_value=10**7, places=2)


@st.composite
def tiered(draw: st.DrawFn) -> list[dict[str, Any]]:
    raw, up_to = [], D(0)
    for _ in range(draw(st.integers(0, 5))):
        up_to += draw(st.decimals(min_value="0.01", max_value=10**5, places=2))
        raw.append(tier(str(up_to), str(draw(rates)), str(draw(flats))))
    return [*raw, tier(None, str(draw(rates)), str(draw(flats)))]


@settings(max_examples=300)
@given(tiered(), sums, sums)
def test_amount_is_monotone_in_the_sum(raw: list[dict[str, Any]], a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    p = params(*raw)
    assert price(str(low), p).amount <= price(str(high), p).amount


@settings(max_examples=300)
@given(tiered(), sums)
def test_tiers_partition_the_sum_and_add_up(raw: list[dict[str, Any]], q: Decimal) -> None:
    priced = price(str(q), params(*raw))
    assert sum((t.units for t in priced.tiers), D(0)) == q
    for t in priced.tiers:
        assert t.units > 0 and t.rate == D(raw[t.index]["rate"])
        assert t.amount == t.units * t.rate / 100 + t.flat_amount
    assert priced.amount == sum((t.amount for t in priced.tiers), D(0))


@settings(max_examples=200)
@given(tiered(), sums)
def test_equals_graduated_at_rate_over_100(raw: list[dict[str, Any]], q: Decimal) -> None:
    as_units = [{"up_to": t["up_to"], "unit_amount": str(D(t["rate"]) / 100), "flat_amount": t["flat_amount"]}
                for t in raw]
    graduated = GRADUATED.price(Usage.of(q), GRADUATED.parse({"tiers": as_units}, PATH), CTX)
    assert price(str(q), params(*raw)).amount == graduated.amount
