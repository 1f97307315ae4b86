"""meterbill.domain.charges: the registry, the protocol, per_unit and graduated models.

The other models are tested in test_charge_models.py and test_time_of_use.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain.charges import (
    REGISTRY,
    ChargeModel,
    Priced,
    PricingContext,
    TierLine,
    Usage,
    get_model,
)
from meterbill.domain.charges.graduated import Graduated, GraduatedParams
from meterbill.domain.charges.per_unit import PerUnit, PerUnitParams
from meterbill.domain.errors import InvalidField, UnknownChargeModel
from meterbill.domain.money import quantize

D = Decimal
PATH = "plan.charges[0]"
GRADUATED = Graduated()
PER_UNIT = PerUnit()
CTX = PricingContext("USD", "UTC")


def graduated(*tiers: dict[str, Any]) -> GraduatedParams:
    return GRADUATED.parse({"model": "graduated", "tiers": list(tiers)}, PATH)


def tier(up_to: str | None, unit: str, flat: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"up_to": up_to, "unit_amount": unit}
    if flat is not None:
        raw["flat_amount"] = flat
    return raw


# Stripe, "Set up tiered pricing" (Typographic fonts example), graduated section:
# https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing#graduated-pricing
# tiers 1-5 at 7 USD, 6-10 at 6.50 USD, 11+ at 6 USD.
STRIPE_TYPOGRAPHIC = graduated(tier("5", "7"), tier("10", "6.5"), tier(None, "6"))

# Lago, "Graduated" charge model:
# https://getlago.com/docs/guide/plans/charges/charge-models/graduated
# "$1 per unit for the first 100 units, then $0.50 per unit for the next 100 calls and
# finally, $0.10 for any additional unit." (Lago's ranges are 0-100, 101-200, 201+; the
# page gives the tiers only, the totals below are worked out from them.)
LAGO_API = graduated(tier("100", "1"), tier("200", "0.50"), tier(None, "0.10"))


# --- registry -----------------------------------------------------------------


def test_registry_is_explicit_and_read_only() -> None:
    assert set(REGISTRY) == {
        "per_unit",
        "package",
        "graduated",
        "volume",
        "percentage",
        "graduated_percentage",
        "matrix",
        "time_of_use",
    }
    for name, model in REGISTRY.items():
        assert model.name == name
        assert get_model(name, PATH) is model
    with pytest.raises(TypeError):
        REGISTRY["tiered"] = PER_UNIT  # type: ignore[index]


@pytest.mark.parametrize("name", ["tiered", "", "PER_UNIT", None, 3, ["graduated"]])
def test_unknown_model(name: object) -> None:
    with pytest.raises(UnknownChargeModel) as info:
        get_model(name, PATH)
    assert info.value.field == f"{PATH}.model"
    assert info.value.problem == (
        f"unknown charge model {name!r}; expected one of: graduated, graduated_percentage, matrix, "
        "package, per_unit, percentage, time_of_use, volume"
    )
    assert info.value.code == "unknown_charge_model"


def test_models_satisfy_the_protocol() -> None:
    models: list[ChargeModel] = list(REGISTRY.values())
    for model in models:
        assert isinstance(model.name, str)
        assert isinstance(model.additive_only, bool)
    additive = {name for name, model in REGISTRY.items() if model.additive_only}
    assert additive == {"percentage", "graduated_percentage", "time_of_use"}


def test_usage_of_wraps_a_quantity() -> None:
    usage = Usage.of(D("12.5"), 3)
    assert usage == Usage(D("12.5"), 3, {}, (), None)


@pytest.mark.parametrize("model", [PER_UNIT, GRADUATED])
def test_transition_bare_decimal_and_no_context(model: Any) -> None:
    # TRANSITION (until rating passes Usage + PricingContext): a bare Decimal is
    # priced as Usage.of(quantity), and ctx may be left out.
    params = PER_UNIT.parse({"unit_amount": "2"}, PATH) if model is PER_UNIT else LAGO_API
    assert model.price(D("150"), params) == model.price(Usage.of(D("150")), params, CTX)


# --- per_unit -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit_amount", "quantity", "expected"),
    [
        # Lago, "Charges", standard model: $0.05 per API call, 1,000 calls = $50.
        # https://doc.getlago.com/docs/guide/plans/charges
        ("0.05", "1000", "50"),
        # our own examples: fractional quantities and sub-cent prices stay unrounded
        ("0.25", "12.5", "3.125"),
        ("0.002", "1234567", "2469.134"),
        ("0.00001", "3", "0.00003"),
        ("0", "99", "0"),
        ("7", "0", "0"),
    ],
)
def test_per_unit(unit_amount: str, quantity: str, expected: str) -> None:
    params = PER_UNIT.parse({"model": "per_unit", "unit_amount": unit_amount}, PATH)
    assert params == PerUnitParams(D(unit_amount))
    priced = PER_UNIT.price(Usage.of(D(quantity)), params, CTX)
    assert priced == Priced(D(expected), D(unit_amount), ())


def test_per_unit_amount_is_unrounded() -> None:
    params = PER_UNIT.parse({"unit_amount": "0.003"}, PATH)
    priced = PER_UNIT.price(Usage.of(D("1.5")), params, CTX)
    assert priced.amount == D("0.0045")
    assert quantize(priced.amount, "USD") == D("0.00")


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        ({}, f"{PATH}.unit_amount", "is required for the per_unit model"),
        (
            {"unit_amount": None},
            f"{PATH}.unit_amount",
            "is required for the per_unit model",
        ),
        (
            {"unit_amount": 0.002},
            f"{PATH}.unit_amount",
            'must be a decimal string such as "12.34", not a JSON float',
        ),
        ({"unit_amount": "-1"}, f"{PATH}.unit_amount", "must not be negative"),
        ({"unit_amount": "2e-3"}, f"{PATH}.unit_amount", None),
    ],
)
def test_per_unit_parse_errors(
    raw: dict[str, Any], field: str, problem: str | None
) -> None:
    with pytest.raises(InvalidField) as info:
        PER_UNIT.parse(raw, PATH)
    assert info.value.field == field
    if problem is not None:
        assert info.value.problem == problem


# --- graduated: public examples -----------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        # Stripe's Typographic tiers (same URL as above); totals are the sum of each
        # tier's units x its price, as the page describes graduated pricing.
        ("1", "7"),  # 1 x 7
        ("5", "35"),  # 5 x 7
        ("6", "41.50"),  # 5 x 7 + 1 x 6.50
        ("8", "54.50"),  # 5 x 7 + 3 x 6.50
        ("20", "127.50"),  # 5 x 7 + 5 x 6.50 + 10 x 6
        ("25", "157.50"),  # 5 x 7 + 5 x 6.50 + 15 x 6
    ],
)
def test_stripe_graduated_example(quantity: str, expected: str) -> None:
    priced = GRADUATED.price(Usage.of(D(quantity)), STRIPE_TYPOGRAPHIC, CTX)
    assert priced.amount == D(expected)
    assert priced.unit_amount is None


def test_stripe_graduated_example_tier_lines() -> None:
    priced = GRADUATED.price(Usage.of(D("8")), STRIPE_TYPOGRAPHIC, CTX)
    assert priced.tiers == (
        TierLine(0, D("0"), D("5"), D("5"), D("7"), D("0"), D("35")),
        TierLine(1, D("5"), D("10"), D("3"), D("6.5"), D("0"), D("19.5")),
    )


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        # Stripe, "Set up a flat fee and overages pricing model":
        # https://docs.stripe.com/billing/subscriptions/usage-based-v1/use-cases/flat-fee-and-overages
        # "include 1,000 monthly video streams in a 200 USD flat fee", usage table
        # "0-1000: 0 USD, 1000+: 0.04 USD". Modelled as a first tier with
        # flat_amount 200 and unit_amount 0 (Stripe's graduated flat_amount).
        ("1", "200"),
        ("1000", "200"),
        ("1001", "200.04"),
        ("1500", "220"),  # 200 + 500 x 0.04
        ("0", "0"),  # our choice: no units, no tier reached, no flat fee
    ],
)
def test_stripe_flat_fee_and_overage_example(quantity: str, expected: str) -> None:
    params = graduated(tier("1000", "0", "200"), tier(None, "0.04"))
    assert GRADUATED.price(Usage.of(D(quantity)), params, CTX).amount == D(expected)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("50", "50"),  # 50 x $1
        ("100", "100"),  # 100 x $1
        ("150", "125"),  # 100 x $1 + 50 x $0.50
        ("200", "150"),  # 100 x $1 + 100 x $0.50
        ("250", "155"),  # 150 + 50 x $0.10
        ("1000", "230"),  # 150 + 800 x $0.10
    ],
)
def test_lago_graduated_example(quantity: str, expected: str) -> None:
    assert GRADUATED.price(Usage.of(D(quantity)), LAGO_API, CTX).amount == D(expected)


def test_meteroid_graduated_example() -> None:
    # Meteroid glossary, "Graduated Pricing": $10 for the first 100 units, $8 for units
    # 101-500, $6 beyond 500; 600 units = 100 x 10 + 400 x 8 + 100 x 6 = $4,800.
    # https://www.meteroid.com/glossary/graduated-pricing
    params = graduated(tier("100", "10"), tier("500", "8"), tier(None, "6"))
    assert GRADUATED.price(Usage.of(D("600")), params, CTX).amount == D("4800")


def test_autumn_graduated_example() -> None:
    # Autumn, "Graduated Pricing": first 1,000 requests $0.01, next 9,000 $0.008,
    # above 10,000 $0.005; 15,000 requests = 10 + 72 + 25 = $107.
    # https://docs.useautumn.com/documentation/modelling-pricing/graduated-pricing
    params = graduated(
        tier("1000", "0.01"), tier("10000", "0.008"), tier(None, "0.005")
    )
    assert GRADUATED.price(Usage.of(D("15000")), params, CTX).amount == D("107")


def test_flat_fee_per_tier_is_charged_once_when_the_tier_is_reached() -> None:
    # Stripe API reference, price tiers: flat_amount is "the flat billing amount for an
    # entire tier, regardless of the number of units in the tier".
    # https://docs.stripe.com/api/prices/create#create_price-tiers-flat_amount
    params = graduated(
        tier("5", "7", "10"), tier("10", "6.5", "5"), tier(None, "6", "1")
    )
    assert GRADUATED.price(Usage.of(D("1")), params, CTX).amount == D("17")  # 7 + 10
    assert GRADUATED.price(Usage.of(D("5")), params, CTX).amount == D("45")  # 35 + 10
    assert GRADUATED.price(Usage.of(D("6")), params, CTX).amount == D("56.5")
    # 45 + 37.5 + 6 + 1
    assert GRADUATED.price(Usage.of(D("11")), params, CTX).amount == D("89.5")
    lines = GRADUATED.price(Usage.of(D("6")), params, CTX).tiers
    assert [line.flat_amount for line in lines] == [D("10"), D("5")]


def test_fractional_quantities() -> None:
    priced = GRADUATED.price(Usage.of(D("5.25")), STRIPE_TYPOGRAPHIC, CTX)
    assert priced.amount == D("36.625")  # 5 x 7 + 0.25 x 6.5, unrounded
    assert priced.tiers[-1].units == D("0.25")
    priced = GRADUATED.price(Usage.of(D("0.001")), STRIPE_TYPOGRAPHIC, CTX)
    assert priced.amount == D("0.007")


def test_single_open_tier_behaves_like_per_unit() -> None:
    params = graduated(tier(None, "0.002"))
    priced = GRADUATED.price(Usage.of(D("1234567")), params, CTX)
    assert priced.amount == D("2469.134")
    assert priced.tiers == (
        TierLine(0, D("0"), None, D("1234567"), D("0.002"), D("0"), D("2469.134")),
    )


@pytest.mark.parametrize("model", [PER_UNIT, GRADUATED])
@pytest.mark.parametrize("quantity", ["-1", "-0.0001", "NaN", "Infinity"])
def test_negative_or_non_finite_quantity_is_a_programming_error(
    model: Any, quantity: str
) -> None:
    params = (
        PER_UNIT.parse({"unit_amount": "1"}, PATH) if model is PER_UNIT else LAGO_API
    )
    with pytest.raises(ValueError):
        model.price(Usage.of(D(quantity)), params, CTX)


def test_zero_quantity_costs_nothing_even_with_flat_fees() -> None:
    params = graduated(tier("10", "1", "100"), tier(None, "1", "50"))
    assert GRADUATED.price(Usage.of(D("0")), params, CTX) == Priced(D("0"), None, ())
    assert GRADUATED.price(Usage.of(D("-0")), params, CTX).amount == 0


# --- graduated: parse errors --------------------------------------------------


@pytest.mark.parametrize(
    ("tiers", "field", "problem"),
    [
        (None, f"{PATH}.tiers", "must be a non-empty list of tiers"),
        ("tiers", f"{PATH}.tiers", "must be a non-empty list of tiers"),
        ([], f"{PATH}.tiers", "must contain at least one tier"),
        (["x"], f"{PATH}.tiers[0]", "must be an object"),
        (
            [tier("1000", "0.01"), tier("1000", "0.005"), tier(None, "0.001")],
            f"{PATH}.tiers[1].up_to",
            "must be greater than the previous tier's up_to (1000)",
        ),
        (
            [tier("1000", "0.01"), tier("500", "0.005"), tier(None, "0.001")],
            f"{PATH}.tiers[1].up_to",
            "must be greater than the previous tier's up_to (1000)",
        ),
        (
            [tier("0", "0.01"), tier(None, "0.005")],
            f"{PATH}.tiers[0].up_to",
            "must be greater than 0",
        ),
        ([tier("1000", "0.01")], f"{PATH}.tiers[0].up_to", None),  # no open last tier
        ([tier("1000", "0.01"), tier("2000", "0.005")], f"{PATH}.tiers[1].up_to", None),
        (
            [tier(None, "0.01"), tier(None, "0.005")],
            f"{PATH}.tiers[0].up_to",
            "may be null only in the last tier",
        ),
        (
            [{"unit_amount": "1"}],
            f"{PATH}.tiers[0].up_to",
            "is required (null for the last, open-ended tier)",
        ),
        (
            [tier("10", "1"), {"unit_amount": "1"}],
            f"{PATH}.tiers[1].up_to",
            "is required (null for the last, open-ended tier)",
        ),
        (
            [{"up_to": 1000.0, "unit_amount": "1"}, tier(None, "1")],
            f"{PATH}.tiers[0].up_to",
            'must be a decimal string such as "12.34", not a JSON float',
        ),
        (
            [tier("10", "1"), {"up_to": None, "unit_amount": 0.5}],
            f"{PATH}.tiers[1].unit_amount",
            'must be a decimal string such as "12.34", not a JSON float',
        ),
        (
            [
                tier("10", "1", "2.5"),
                {"up_to": None, "unit_amount": "1", "flat_amount": 2.5},
            ],
            f"{PATH}.tiers[1].flat_amount",
            'must be a decimal string such as "12.34", not a JSON float',
        ),
        (
            [tier("10", "-1"), tier(None, "1")],
            f"{PATH}.tiers[0].unit_amount",
            "must not be negative",
        ),
        (
            [tier("10", "1", "-5"), tier(None, "1")],
            f"{PATH}.tiers[0].flat_amount",
            "must not be negative",
        ),
        (
            [tier("-10", "1"), tier(None, "1")],
            f"{PATH}.tiers[0].up_to",
            "must not be negative",
        ),
        (
            [tier("10", "1"), {"up_to": None}],
            f"{PATH}.tiers[1].unit_amount",
            "is required",
        ),
        (
            [{"up_to": None, "unit_amount": "1", "flat_fee": "1"}],
            f"{PATH}.tiers[0].flat_fee",
            None,
        ),
    ],
)
def test_graduated_parse_errors_name_the_field(
    tiers: Any, field: str, problem: str | None
) -> None:
    with pytest.raises(InvalidField) as info:
        GRADUATED.parse({"model": "graduated", "tiers": tiers}, PATH)
    assert info.value.field == field
    if problem is not None:
        assert info.value.problem == problem


def test_graduated_parse_accepts_integers_and_defaults() -> None:
    params = GRADUATED.parse(
        {
            "tiers": [
                {"up_to": 1000, "unit_amount": 1},
                {"up_to": None, "unit_amount": "0.5", "flat_amount": None},
            ]
        },
        PATH,
    )
    assert [(t.up_to, t.unit_amount, t.flat_amount) for t in params.tiers] == [
        (D(1000), D(1), D(0)),
        (None, D("0.5"), D(0)),
    ]
    assert params == graduated(tier("1000", "1"), tier(None, "0.5", "0"))


def test_parse_rejects_non_mapping() -> None:
    for model in (PER_UNIT, GRADUATED):
        with pytest.raises(InvalidField) as info:
            model.parse(["not", "an", "object"], PATH)  # type: ignore[arg-type]
        assert info.value.field == PATH


# --- properties ---------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=100, places=4)
quantities = st.decimals(min_value=0, max_value=10**7, places=3)


@st.composite
def graduated_params(draw: st.DrawFn) -> GraduatedParams:
    n = draw(st.integers(1, 6))
    widths = draw(
        st.lists(
            st.decimals(min_value=D("0.001"), max_value=10**5, places=3),
            min_size=n - 1,
            max_size=n - 1,
        )
    )
    raw: list[dict[str, Any]] = []
    up_to = D(0)
    for width in widths:
        up_to += width
        raw.append(
            {
                "up_to": str(up_to),
                "unit_amount": str(draw(amounts)),
                "flat_amount": str(draw(amounts)),
            }
        )
    raw.append(
        {
            "up_to": None,
            "unit_amount": str(draw(amounts)),
            "flat_amount": str(draw(amounts)),
        }
    )
    return GRADUATED.parse({"tiers": raw}, PATH)


@settings(max_examples=300)
@given(graduated_params(), quantities, quantities)
def test_graduated_amount_is_monotone_in_quantity(
    params: GraduatedParams, a: Decimal, b: Decimal
) -> None:
    low, high = sorted((a, b))
    low_amount = GRADUATED.price(Usage.of(low), params, CTX).amount
    assert low_amount <= GRADUATED.price(Usage.of(high), params, CTX).amount


@settings(max_examples=300)
@given(graduated_params(), quantities)
def test_graduated_tier_units_partition_the_quantity(
    params: GraduatedParams, q: Decimal
) -> None:
    priced = GRADUATED.price(Usage.of(q), params, CTX)
    assert sum((line.units for line in priced.tiers), D(0)) == q
    assert [line.index for line in priced.tiers] == list(range(len(priced.tiers)))
    previous_upper = D(0)
    for line in priced.tiers:
        assert line.lower == previous_upper
        assert line.units > 0
        assert line.upper is None or line.units <= line.upper - line.lower
        assert line.amount == line.units * line.unit_amount + line.flat_amount
        previous_upper = line.upper if line.upper is not None else previous_upper
    for line in priced.tiers[:-1]:
        assert line.upper is not None and line.units == line.upper - line.lower  # full
    assert priced.amount == sum((line.amount for line in priced.tiers), D(0))


@given(graduated_params(), amounts)
def test_zero_quantity_costs_zero(
    params: GraduatedParams, unit_amount: Decimal
) -> None:
    assert GRADUATED.price(Usage.of(D(0)), params, CTX).amount == 0
    per_unit = PER_UNIT.parse({"unit_amount": str(unit_amount)}, PATH)
    assert PER_UNIT.price(Usage.of(D(0)), per_unit, CTX).amount == 0


@given(amounts, quantities, quantities)
def test_per_unit_is_linear_and_monotone(
    unit_amount: Decimal, a: Decimal, b: Decimal
) -> None:
    params = PER_UNIT.parse({"unit_amount": str(unit_amount)}, PATH)
    low, high = sorted((a, b))
    low_amount = PER_UNIT.price(Usage.of(low), params, CTX).amount
    assert low_amount <= PER_UNIT.price(Usage.of(high), params, CTX).amount
    assert PER_UNIT.price(Usage.of(a), params, CTX).amount == a * unit_amount


@given(graduated_params(), quantities)
def test_single_tier_graduated_matches_per_unit(
    params: GraduatedParams, q: Decimal
) -> None:
    unit = params.tiers[0].unit_amount
    as_graduated = graduated(tier(None, str(unit)))
    as_per_unit = PER_UNIT.parse({"unit_amount": str(unit)}, PATH)
    assert (
        GRADUATED.price(Usage.of(q), as_graduated, CTX).amount
        == PER_UNIT.price(Usage.of(q), as_per_unit, CTX).amount
    )


@given(
    st.floats(allow_nan=True), st.sampled_from(["up_to", "unit_amount", "flat_amount"])
)
def test_parse_rejects_floats_anywhere(value: float, key: str) -> None:
    raw_tier: dict[str, Any] = {
        "up_to": "10",
        "unit_amount": "1",
        "flat_amount": "0",
        key: value,
    }
    with pytest.raises(InvalidField) as info:
        GRADUATED.parse({"tiers": [raw_tier, tier(None, "1")]}, PATH)
    assert info.value.field == f"{PATH}.tiers[0].{key}"
    assert "not a JSON float" in info.value.problem


@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=6, unique=True))
def test_parse_rejects_unsorted_tiers(bounds: list[int]) -> None:
    if bounds == sorted(bounds):
        bounds = bounds[::-1]
    raw = [tier(str(b), "1") for b in bounds] + [tier(None, "1")]
    bad = next(i for i in range(1, len(bounds)) if bounds[i] < bounds[i - 1])
    with pytest.raises(InvalidField) as info:
        GRADUATED.parse({"tiers": raw}, PATH)
    assert info.value.field == f"{PATH}.tiers[{bad}].up_to"
    assert (
        info.value.problem
        == f"must be greater than the previous tier's up_to ({bounds[bad - 1]})"
    )
