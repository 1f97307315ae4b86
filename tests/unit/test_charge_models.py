"""meterbill.domain.charges: package, volume, percentage and matrix.

Examples come from the public docs of Stripe and Lago (cited per example); where a page
states a rule without numbers, the comment says so and the numbers are computed from
the stated rule. time_of_use is in test_time_of_use.py.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meterbill.domain.charges import REGISTRY, Cell, Part, Priced, PricingContext, TierLine, Usage
from meterbill.domain.charges.matrix import Matrix, MatrixParams
from meterbill.domain.charges.package import Package, PackageParams
from meterbill.domain.charges.percentage import Percentage, PercentageParams
from meterbill.domain.charges.volume import Volume, VolumeParams
from meterbill.domain.errors import InvalidField

D = Decimal
PATH = "plan.charges[2]"
CTX = PricingContext("USD", "UTC")
PACKAGE = Package()
VOLUME = Volume()
PERCENTAGE = Percentage()
MATRIX = Matrix()


def tier(up_to: str | None, unit: str, flat: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"up_to": up_to, "unit_amount": unit}
    if flat is not None:
        raw["flat_amount"] = flat
    return raw


def total(parts: tuple[Part, ...]) -> Decimal:
    return sum((p.amount for p in parts), D(0))


# --- package ------------------------------------------------------------------------


def package(size: str, amount: str) -> PackageParams:
    return PACKAGE.parse({"model": "package", "package_size": size, "package_amount": amount}, PATH)


@pytest.mark.parametrize(
    ("users", "expected"),
    [("1", "10"), ("3", "10"), ("5", "10"), ("6", "20"), ("7", "20")],
)
def test_stripe_quantity_transformation_example(users: str, expected: str) -> None:
    # Stripe, "Quantity transformation": $10 for every 5 users (or portion thereof),
    # transform_quantity[divide_by]=5, [round]=up; table 1, 3, 5 -> $10; 6, 7 -> $20.
    # https://stripe.com/docs/billing/subscriptions/quantity-transformation
    priced = PACKAGE.price(Usage.of(D(users)), package("5", "10"), CTX)
    assert priced.amount == D(expected)


def test_stripe_transform_quantities_car_rental() -> None:
    # Stripe, "Transform quantities": usage reported in minutes, 10 USD per hour rounded
    # up; "If a customer rents the car for 150 minutes, that customer is charged 30 USD
    # for 3 hours of rental".
    # https://docs.stripe.com/billing/subscriptions/usage-based/transform-quantities
    priced = PACKAGE.price(Usage.of(D("150")), package("60", "10"), CTX)
    assert priced.amount == D("30")
    assert priced.parts == (Part("3 x package of 60 (150 units)", D(3), D(10), D(30)),)


# Lago's package example with free units is rated in test_rating.py: ``free_units`` is a charge
# term the rating deducts before any model prices the rest.


def test_package_parts_and_fractions() -> None:
    priced = PACKAGE.price(Usage.of(D("2.2")), package("0.5", "1.25"), CTX)
    # 2.2 GB in 0.5 GB packages -> 5 packages
    assert priced == Priced(
        D("6.25"), None, (), (Part("5 x package of 0.5 (2.2 units)", D(5), D("1.25"), D("6.25")),)
    )
    assert PACKAGE.price(Usage.of(D(0)), package("5", "10"), CTX) == Priced(D(0), None)


def test_package_division_is_exact_not_rounded() -> None:
    # 10**37 / 0.3 = 3333...3333.33 (38 integer digits): a quotient rounded to the 38
    # digits of CONTEXT would be a whole number and lose the started package.
    priced = PACKAGE.price(Usage.of(D(10) ** 37), package("0.3", "1"), CTX)
    assert priced.amount == D("3" * 37 + "4")


# --- volume -------------------------------------------------------------------------


def volume(*tiers: dict[str, Any]) -> VolumeParams:
    return VOLUME.parse({"model": "volume", "tiers": list(tiers)}, PATH)


# Stripe, "Set up tiered pricing", volume-based pricing (Typographic fonts):
# https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing#volume-based-pricing
STRIPE_TYPOGRAPHIC = volume(tier("5", "7"), tier("10", "6.5"), tier(None, "6"))

# Lago, "Volume": tiers 0-10,000 $0.0010, 10,001-50,000 $0.0008, 50,001-100,000 $0.0006,
# 100,001+ $0.0004, each with a $10 fixed fee.
# https://getlago.com/docs/guide/plans/charges/charge-models/volume
LAGO_API_CALLS = volume(
    tier("10000", "0.0010", "10"),
    tier("50000", "0.0008", "10"),
    tier("100000", "0.0006", "10"),
    tier(None, "0.0004", "10"),
)


@pytest.mark.parametrize(
    ("fonts", "unit", "expected"),
    [("1", "7", "7"), ("5", "7", "35"), ("6", "6.5", "39"), ("20", "6", "120"),
     ("25", "6", "150")],
)
def test_stripe_volume_table(fonts: str, unit: str, expected: str) -> None:
    # The page's table "Quantity and usage at end of the period | Unit cost | Total".
    priced = VOLUME.price(Usage.of(D(fonts)), STRIPE_TYPOGRAPHIC, CTX)
    assert (priced.unit_amount, priced.amount) == (D(unit), D(expected))


def test_lago_volume_example() -> None:
    # "65,000 API calls would cost 65,000 x $0.0006 + $10 = $49."
    priced = VOLUME.price(Usage.of(D("65000")), LAGO_API_CALLS, CTX)
    assert priced.amount == D("49")
    assert priced.tiers == (
        TierLine(2, D("50000"), D("100000"), D("65000"), D("0.0006"), D("10"), D("49")),
    )


def test_volume_total_can_decrease_at_a_boundary() -> None:
    # Stripe: "Because the tier price applies to the entire quantity (or usage), the
    # total might decrease". With Lago's table: 10,000 calls = 10 + 10 = $20, but
    # 10,001 calls = 8.0008 + 10 = $18.0008 (computed from the page's tiers).
    at = VOLUME.price(Usage.of(D("10000")), LAGO_API_CALLS, CTX).amount
    above = VOLUME.price(Usage.of(D("10001")), LAGO_API_CALLS, CTX).amount
    assert (at, above) == (D("20"), D("18.0008"))
    assert above < at


def test_volume_fractional_quantity_falls_in_the_next_tier() -> None:
    # lago-api#1699: "If aggregation result is 5.5, we should apply second tier values"
    # (tiers 0-5, 6-10, 11+). Ours: (5, 10] holds 5.5.
    params = volume(tier("5", "1"), tier("10", "2"), tier(None, "3"))
    assert VOLUME.price(Usage.of(D("5.5")), params, CTX).amount == D("11")


def test_volume_zero_units_cost_nothing_even_with_a_flat_fee() -> None:
    # Stripe's stored docs do not say what 0 units cost with a first-tier flat_amount;
    # we charge nothing (no tier reached), as graduated does.
    assert VOLUME.price(Usage.of(D(0)), LAGO_API_CALLS, CTX) == Priced(D(0), None)


# --- percentage ---------------------------------------------------------------------


def percentage(**raw: Any) -> PercentageParams:
    return PERCENTAGE.parse({"model": "percentage", **raw}, PATH)


def test_lago_percentage_transaction_fee() -> None:
    # Lago, "Percentage": rate 1.2 %, fixed fee $0.10 per transaction; "for the fourth
    # transaction, the charge will be $0.10 x 1 event + 1.2% of $50 = $0.70".
    # https://getlago.com/docs/guide/plans/charges/charge-models/percentage
    priced = PERCENTAGE.price(Usage(D("50"), 1), percentage(rate="1.2", fixed_amount="0.10"), CTX)
    assert priced.amount == D("0.70")
    assert priced.parts == (
        Part("1.2% of 50", D("50"), D("0.012"), D("0.600")),
        Part("0.10 x 1 events", D(1), D("0.10"), D("0.10")),
    )


def test_lago_stripe_card_template() -> None:
    # Lago template "per-transaction like Stripe": card payments online 2.9 % + $0.30 per
    # transaction. The page gives the rates only; amounts computed from them.
    # https://getlago.com/docs/templates/per-transaction/stripe
    params = percentage(rate="2.9", fixed_amount="0.30")
    one = PERCENTAGE.price(Usage(D("100"), 1), params, CTX)
    assert one.amount == D("3.20")
    three = PERCENTAGE.price(Usage(D("140"), 3), params, CTX)
    assert three.amount == D("4.96")  # 2.9 % of 140 = 4.06, + 3 x 0.30


def test_per_event_min_max_clamps_each_event() -> None:
    # Lago documents per-transaction spending minimum / maximum without a worked example
    # (stored copy of the page above); computed from its rule: each transaction's fee
    # (rate x amount + fixed) is raised to the minimum / lowered to the maximum.
    params = percentage(rate="2.9", fixed_amount="0.30", per_event_min="0.50", per_event_max="5.00")
    usage = Usage(D("605"), 3, values={D("5"): 1, D("100"): 1, D("500"): 1})
    priced = PERCENTAGE.price(usage, params, CTX)
    # fees: 0.445 -> 0.50, 3.20, 14.80 -> 5.00
    assert priced.amount == D("8.70")
    assert priced.parts == (
        Part("2.9% of 605", D("605"), D("0.029"), D("17.545")),
        Part("0.30 x 3 events", D(3), D("0.30"), D("0.90")),
        Part("per-event minimum 0.50 (1 events)", D(1), None, D("0.055")),
        Part("per-event maximum 5.00 (1 events)", D(1), None, D("-9.80")),
    )


def test_per_event_min_max_needs_the_values() -> None:
    params = percentage(rate="1", per_event_min="0.5")
    with pytest.raises(ValueError) as info:
        PERCENTAGE.price(Usage(D("10"), 2), params, CTX)
    assert str(info.value) == (
        "percentage per-event min/max needs a meter that keeps per-event values"
    )
    with pytest.raises(ValueError, match="add up to 9.0 over 2 events"):
        PERCENTAGE.price(Usage(D("10"), 2, values={D("4.5"): 2}), params, CTX)


def cells(*events: tuple[int, str]) -> tuple[Cell, ...]:
    """(15-minute cell number, value) per event -> time-ordered cells keeping their values."""
    by_cell: dict[int, dict[Decimal, int]] = {}
    for cell, value in events:
        values = by_cell.setdefault(cell, {})
        values[D(value)] = values.get(D(value), 0) + 1
    return tuple(Cell(900 * c, sum(v.values()), sum((k * n for k, n in v.items()), D(0)), v)
                 for c, v in sorted(by_cell.items()))


def usage_of_events(*events: tuple[int, str], keep_values: bool = True) -> Usage:
    cs = cells(*events)
    if not keep_values:
        cs = tuple(Cell(c.start, c.events, c.amount) for c in cs)
    values: dict[Decimal, int] = {}
    for _, value in events:
        values[D(value)] = values.get(D(value), 0) + 1
    return Usage(sum((c.amount for c in cs), D(0)), len(events), cells=cs,
                 values=values if keep_values else None)


def test_lago_free_events_pay_neither_rate_nor_fixed_fee() -> None:
    # Lago, "Percentage" (page above): 1.2 %, $0.10 per transaction, the first 3 events free;
    # transactions $200, $100, $100, $50: "for the fourth transaction, the charge will be
    # $0.10 x 1 event + 1.2% of $50 = $0.70" (the page's table also frees $500; with the first 3
    # events free alone lago-api's PercentageService gives the same: the running total of the
    # first 3 events, $400, pays no rate, and 3 events pay no fixed fee).
    params = percentage(rate="1.2", fixed_amount="0.10", free_units_per_events="3")
    usage = usage_of_events((0, "200"), (1, "100"), (2, "100"), (3, "50"))
    priced = PERCENTAGE.price(usage, params, CTX)
    assert priced.amount == D("0.70")
    assert priced.parts == (
        Part("1.2% of 50 (first 3 events free: 400)", D("50"), D("0.012"), D("0.600")),
        Part("0.10 x 1 events (3 free)", D(1), D("0.10"), D("0.10")),
    )
    # with fewer events than free ones nothing is charged, and no detail is needed
    assert PERCENTAGE.price(Usage(D("400"), 3), params, CTX).amount == 0


def test_free_events_without_a_fixed_fee_pay_no_rate() -> None:
    params = percentage(rate="2", free_units_per_events="2")
    priced = PERCENTAGE.price(usage_of_events((0, "100"), (1, "50"), (5, "30")), params, CTX)
    assert priced.amount == D("0.60")  # 2 % of the third event only


def test_free_events_end_inside_a_cell_free_its_largest_values() -> None:
    # The N-th event falls in a 15-minute cell that holds later events too; their order inside the
    # cell is not kept. The free ones are taken to be the cell's largest values: the amount is the
    # exact amount of one real order of those events and never more than any other order's.
    params = percentage(rate="10", fixed_amount="1", free_units_per_events="2")
    usage = usage_of_events((0, "100"), (4, "10"), (4, "40"), (4, "70"))
    priced = PERCENTAGE.price(usage, params, CTX)
    assert priced.amount == D("7")  # 10 % of (10 + 40) + 2 x 1; 70 is free with 100
    assert priced.parts[0].label == "10% of 50 (first 2 events free: 170)"
    # without the values only the cell's total is known: its whole amount pays no rate, while the
    # fixed fee (the same for every event) is exact
    plain = usage_of_events((0, "100"), (4, "10"), (4, "40"), (4, "70"), keep_values=False)
    assert PERCENTAGE.price(plain, params, CTX).amount == D("2")


def test_free_events_with_per_event_min_max() -> None:
    # Lago's per-transaction path: a free event costs nothing (no minimum either); the others are
    # clamped one by one.
    params = percentage(rate="1", fixed_amount="0.50", per_event_min="1", per_event_max="5",
                        free_units_per_events="1")
    usage = usage_of_events((0, "20"), (1, "600"), (2, "20"))
    priced = PERCENTAGE.price(usage, params, CTX)
    assert priced.amount == D("6")  # free; 6.50 -> 5; 0.70 -> 1
    assert total(priced.parts) == priced.amount


def test_free_events_need_the_cells_when_some_events_pay() -> None:
    params = percentage(rate="1", free_units_per_events="2")
    with pytest.raises(ValueError, match="per 15-minute cell"):
        PERCENTAGE.price(Usage(D("10"), 3), params, CTX)


def test_free_total_amount_pays_no_rate() -> None:
    # Lago: "Free units (total amount - optional): amount that is not subject to the
    # charge rate" (page above); computed: 1.2 % of (650 - 500).
    params = percentage(rate="1.2", free_units_per_total_aggregation="500")
    assert PERCENTAGE.price(Usage(D("450"), 4), params, CTX).amount == 0
    priced = PERCENTAGE.price(Usage(D("650"), 5), params, CTX)
    assert priced.amount == D("1.80")
    assert priced.parts == (Part("1.2% of 150 (500 free)", D("150"), D("0.012"), D("1.800")),)


def test_lago_order_dependent_combinations_are_refused() -> None:
    # Lago's page: with 3 free events AND $500 free, transactions $200, $100, $100, $50
    # cost $0.70 because the free units end with the 4th EVENT although only $450 was
    # spent: it depends on the order of events, which a period's usage does not keep.
    with pytest.raises(InvalidField) as info:
        percentage(rate="1.2", fixed_amount="0.10", free_units_per_events="3",
                   free_units_per_total_aggregation="500")
    assert info.value.field == f"{PATH}.free_units_per_total_aggregation"


def test_roll_up_gives_time_ordered_cells_over_all_groups() -> None:
    # What percentage free events read: the usage per 15-minute cell, groups merged, in time
    # order whatever order the buckets come in; values only for a meter that keeps them.
    from meterbill.domain.meters import BucketState, parse_meter, usage_of

    raw = {"event_type": "pay", "aggregation": "sum", "property": "amount", "group_by": ["card"]}
    kept = parse_meter("pay", {**raw, "keep_values": True})
    A, B = '["s:a"]', '["s:b"]'
    buckets = [(1800, B, BucketState(1, D("7"), values={D("7"): 1})),
               (900, A, BucketState(2, D("10"), values={D("4"): 1, D("6"): 1})),
               (1800, A, BucketState(2, D("14"), values={D("7"): 2}))]
    for detail in (False, True):
        usage = usage_of(kept, buckets, detail)
        assert list(usage.cells) == list(usage.cells) == [
            Cell(900, 2, D("10"), {D("4"): 1, D("6"): 1}), Cell(1800, 3, D("21"), {D("7"): 3})]
    plain_meter = parse_meter("pay", raw)
    assert list(usage_of(plain_meter, buckets, False).cells) == [Cell(900, 2, D("10")), Cell(1800, 3, D("21"))]
    count = parse_meter("n", {"event_type": "pay", "aggregation": "count"})
    assert [c.amount for c in usage_of(count, buckets, False).cells] == [D(2), D(3)]
    maximum = parse_meter("m", {"event_type": "pay", "aggregation": "max", "property": "amount"})
    assert list(usage_of(maximum, [(900, "", BucketState(1, max=D(3)))], False).cells) == []


# --- matrix -------------------------------------------------------------------------

REGION_INSTANCE = {
    "model": "matrix",
    "dimensions": ["region", "instance_type"],
    "prices": [
        {"match": {"region": "eu", "instance_type": "m5"}, "unit_amount": "0.12"},
        {"match": {"region": "us", "instance_type": "m5"}, "unit_amount": "0.10"},
        {"match": {"region": "us", "instance_type": None}, "unit_amount": "0.09"},
    ],
    "default_unit_amount": "0.15",
}


def group(region: str | None, instance: str | None) -> tuple[tuple[str, str | None], ...]:
    return (("region", region), ("instance_type", instance))


def test_matrix_prices_each_group() -> None:
    # Orb's matrix price has the same shape: per-cell unit amounts chosen by one or two
    # event property values, "default_unit_amount: Default per unit rate for any usage
    # not bucketed into a specified matrix_value" (no worked example; computed).
    # https://www.rubydoc.info/gems/orb-billing/Orb/Models/MatrixWithAllocationConfig
    params = MATRIX.parse(REGION_INSTANCE, PATH)
    assert params.dimensions == ("region", "instance_type")
    groups = {
        group("us", "m5"): D("100"),
        group("eu", "m5"): D("10"),
        group("us", None): D("1000"),
        group("ap", "c6"): D("2"),
        group("eu", "c6"): D(0),
    }
    priced = MATRIX.price(Usage(D("1112"), groups=groups), params, CTX)
    assert priced.parts == (
        Part("region=ap, instance_type=c6", D("2"), D("0.15"), D("0.30")),
        Part("region=eu, instance_type=m5", D("10"), D("0.12"), D("1.20")),
        Part("region=us, instance_type=(none)", D("1000"), D("0.09"), D("90.00")),
        Part("region=us, instance_type=m5", D("100"), D("0.10"), D("10.00")),
    )
    assert priced.amount == D("101.50") == total(priced.parts)
    assert priced.unit_amount is None
    assert MATRIX.price(Usage(D("1112"), groups=groups), params, CTX) == priced  # from the memoised rows


def test_matrix_without_default_fails_only_for_an_unpriced_group_with_usage() -> None:
    raw = {k: v for k, v in REGION_INSTANCE.items() if k != "default_unit_amount"}
    params = MATRIX.parse(raw, PATH)
    ok = Usage(D(5), groups={group("eu", "m5"): D(5), group("ap", "c6"): D(0)})
    assert MATRIX.price(ok, params, CTX).amount == D("0.60")
    with pytest.raises(ValueError) as info:
        MATRIX.price(Usage(D(1), groups={group("ap", "c6"): D(1)}), params, CTX)
    assert str(info.value) == (
        "no matrix price for region=ap, instance_type=c6 and no default_unit_amount"
    )


def test_matrix_needs_groups_that_follow_its_dimensions() -> None:
    params = MATRIX.parse(REGION_INSTANCE, PATH)
    with pytest.raises(ValueError, match="usage per dimension group"):
        MATRIX.price(Usage.of(D(3)), params, CTX)
    assert MATRIX.price(Usage.of(D(0)), params, CTX) == Priced(D(0), None)
    for _ in range(2):  # also once the key's row is memoised on the params
        with pytest.raises(ValueError, match="does not follow dimensions"):
            MATRIX.price(Usage(D(1), groups={(("region", "eu"),): D(1)}), params, CTX)


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"dimensions": []}, "dimensions", None),
        ({"dimensions": ["region", "region"]}, "dimensions[1]", "repeats dimension 'region'"),
        ({"dimensions": ["a", "b", "c", "d", "e", "f"]}, "dimensions", None),
        ({"prices": []}, "prices", None),
        ({"prices": [{"match": {"region": "eu"}, "unit_amount": "1"}]},
         "prices[0].match.instance_type", "is required: a row matches every dimension"),
        ({"prices": [{"match": {"region": "eu", "instance_type": "m5", "zone": "a"},
                      "unit_amount": "1"}]}, "prices[0].match.zone", None),
        ({"prices": [{"match": {"region": 1, "instance_type": "m5"}, "unit_amount": "1"}]},
         "prices[0].match.region", "must be a string, or null for an absent property"),
        ({"prices": [{"match": {"region": "eu", "instance_type": "m5"}}]},
         "prices[0].unit_amount", "is required"),
        ({"prices": [{"match": {"region": "eu", "instance_type": "m5"}, "unit_amount": "1",
                      "currency": "USD"}]}, "prices[0].currency", None),
        ({"prices": [{"match": {"region": "eu", "instance_type": "m5"}, "unit_amount": "1"},
                     {"match": {"instance_type": "m5", "region": "eu"}, "unit_amount": "2"}]},
         "prices[1].match", "repeats an earlier row's combination"),
        ({"default_unit_amount": 0.1}, "default_unit_amount", None),
    ],
)
def test_matrix_parse_errors_name_the_field(
    change: dict[str, Any], field: str, problem: str | None
) -> None:
    with pytest.raises(InvalidField) as info:
        MATRIX.parse({**REGION_INSTANCE, **change}, PATH)
    assert info.value.field == f"{PATH}.{field}"
    if problem is not None:
        assert info.value.problem == problem


# --- parse errors shared by every model ----------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "package": {"package_size": "100", "package_amount": "5"},
    "volume": {"tiers": [tier("10", "1", "2"), tier(None, "0.5", "1")]},
    "percentage": {"rate": "2.9", "fixed_amount": "0.30", "free_units_per_events": "2"},
    "percentage_min_max": {"rate": "2.9", "per_event_min": "0.5", "per_event_max": "5"},
    "percentage_free_total": {"rate": "2.9", "free_units_per_total_aggregation": "100"},
    "matrix": REGION_INSTANCE,
}
# Every decimal a plan author writes, as a path inside the raw charge.
DECIMALS: list[tuple[str, tuple[str | int, ...]]] = [
    ("package", ("package_size",)),
    ("package", ("package_amount",)),
    ("volume", ("tiers", 0, "up_to")),
    ("volume", ("tiers", 0, "unit_amount")),
    ("volume", ("tiers", 1, "flat_amount")),
    ("percentage", ("rate",)),
    ("percentage", ("fixed_amount",)),
    ("percentage", ("free_units_per_events",)),
    ("percentage_min_max", ("per_event_min",)),
    ("percentage_min_max", ("per_event_max",)),
    ("percentage_free_total", ("free_units_per_total_aggregation",)),
    ("matrix", ("prices", 1, "unit_amount")),
    ("matrix", ("default_unit_amount",)),
]


def model_of(name: str) -> Any:
    return REGISTRY[name.split("_")[0]]


def with_value(raw: Mapping[str, Any], where: tuple[str | int, ...], value: Any) -> Any:
    changed = copy.deepcopy(dict(raw))
    node: Any = changed
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return changed


def render(where: tuple[str | int, ...]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in where)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_configurations_parse(name: str) -> None:
    model_of(name).parse(VALID[name], PATH)


@given(st.sampled_from(DECIMALS), st.floats(allow_nan=True, allow_infinity=True))
def test_parse_rejects_floats_and_names_the_field(
    location: tuple[str, tuple[str | int, ...]], value: float
) -> None:
    name, where = location
    with pytest.raises(InvalidField) as info:
        model_of(name).parse(with_value(VALID[name], where, value), PATH)
    assert info.value.field == PATH + render(where)
    assert "not a JSON float" in info.value.problem


@given(st.sampled_from(DECIMALS), st.decimals(min_value="-1000", max_value="-0.0001", places=4))
def test_parse_rejects_negative_amounts(
    location: tuple[str, tuple[str | int, ...]], value: Decimal
) -> None:
    name, where = location
    with pytest.raises(InvalidField) as info:
        model_of(name).parse(with_value(VALID[name], where, str(value)), PATH)
    assert info.value.field == PATH + render(where)
    assert info.value.problem == "must not be negative"


@pytest.mark.parametrize(
    ("name", "row", "key"),
    [("volume", ("tiers", 1), "flat_fee"), ("matrix", ("prices", 0), "price"),
     ("matrix", ("prices", 2), "unit_price")],
)
def test_parse_rejects_unknown_keys_inside_rows(
    name: str, row: tuple[str | int, ...], key: str
) -> None:
    with pytest.raises(InvalidField) as info:
        model_of(name).parse(with_value(VALID[name], (*row, key), "1"), PATH)
    assert info.value.field == PATH + render((*row, key))


@pytest.mark.parametrize(
    ("name", "raw", "field", "problem"),
    [
        ("package", {"package_amount": "5"}, "package_size", "is required"),
        ("package", {"package_size": "0", "package_amount": "5"}, "package_size",
         "must be greater than 0"),
        ("package", {"package_size": "10"}, "package_amount", "is required"),
        ("percentage", {}, "rate", "is required"),
        ("percentage", {"rate": "1", "per_event_min": "2", "per_event_max": "1"},
         "per_event_max", "must be at least per_event_min (2)"),
        ("percentage", {"rate": "1", "fixed_amount": "1", "free_units_per_events": "1.5"},
         "free_units_per_events", "must be a whole number of events"),
        ("percentage", {"rate": "1", "fixed_amount": "1",
                        "free_units_per_total_aggregation": "2"},
         "free_units_per_total_aggregation", None),
        ("percentage", {"rate": "1", "per_event_min": "1",
                        "free_units_per_total_aggregation": "2"},
         "free_units_per_total_aggregation", None),
        ("percentage", {"rate": True}, "rate", None),
        ("volume", {"tiers": []}, "tiers", "must contain at least one tier"),
        ("volume", {"tiers": [tier("10", "1")]}, "tiers[0].up_to", None),
        ("volume", {"tiers": [tier("10", "1"), tier("5", "1"), tier(None, "1")]},
         "tiers[1].up_to", "must be greater than the previous tier's up_to (10)"),
    ],
)
def test_parse_errors_name_the_field(
    name: str, raw: dict[str, Any], field: str, problem: str | None
) -> None:
    with pytest.raises(InvalidField) as info:
        REGISTRY[name].parse(raw, PATH)
    assert info.value.field == f"{PATH}.{field}"
    if problem is not None:
        assert info.value.problem == problem


@pytest.mark.parametrize("name", ["package", "volume", "percentage", "matrix"])
def test_parse_rejects_non_mapping(name: str) -> None:
    with pytest.raises(InvalidField) as info:
        REGISTRY[name].parse(["x"], PATH)  # type: ignore[arg-type]
    assert info.value.field == PATH


@pytest.mark.parametrize("name", ["package", "volume", "percentage", "matrix"])
@pytest.mark.parametrize("quantity", ["-1", "NaN", "Infinity"])
def test_negative_or_non_finite_usage_is_a_programming_error(name: str, quantity: str) -> None:
    params = REGISTRY[name].parse(VALID[name], PATH)
    with pytest.raises(ValueError):
        REGISTRY[name].price(Usage.of(D(quantity)), params, CTX)


# --- properties ---------------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=100, places=4)
quantities = st.decimals(min_value=0, max_value=10**6, places=3)
sizes = st.decimals(min_value=D("0.001"), max_value=10**4, places=3)


@st.composite
def package_params(draw: st.DrawFn) -> PackageParams:
    return package(str(draw(sizes)), str(draw(amounts)))


@settings(max_examples=300)
@given(package_params(), quantities, quantities)
def test_package_is_monotone_and_exact(params: PackageParams, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    low_priced = PACKAGE.price(Usage.of(low), params, CTX)
    high_priced = PACKAGE.price(Usage.of(high), params, CTX)
    assert low_priced.amount <= high_priced.amount
    packages = math.ceil(Fraction(high) / Fraction(params.package_size))
    assert high_priced.amount == packages * params.package_amount
    assert total(high_priced.parts) == high_priced.amount


@st.composite
def volume_params(draw: st.DrawFn) -> VolumeParams:
    n = draw(st.integers(1, 6))
    raw, up_to = [], D(0)
    for _ in range(n - 1):
        up_to += draw(sizes)
        raw.append(tier(str(up_to), str(draw(amounts)), str(draw(amounts))))
    raw.append(tier(None, str(draw(amounts)), str(draw(amounts))))
    return volume(*raw)


@settings(max_examples=300)
@given(volume_params(), quantities)
def test_volume_prices_all_units_at_the_tier_of_the_total(params: VolumeParams, q: Decimal) -> None:
    priced = VOLUME.price(Usage.of(q), params, CTX)
    if not q:
        assert priced == Priced(D(0), None)
        return
    (line,) = priced.tiers
    assert line.lower < q and (line.upper is None or q <= line.upper)
    assert line.units == q
    assert priced.amount == line.amount == q * line.unit_amount + line.flat_amount
    assert priced.unit_amount == line.unit_amount == params.tiers[line.index].unit_amount


@settings(max_examples=300)
@given(volume_params(), quantities, quantities)
def test_volume_is_monotone_within_a_tier(params: VolumeParams, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    low_priced = VOLUME.price(Usage.of(low), params, CTX)
    high_priced = VOLUME.price(Usage.of(high), params, CTX)
    assume(low and low_priced.tiers[0].index == high_priced.tiers[0].index)
    assert low_priced.amount <= high_priced.amount


@st.composite
def percentage_params(draw: st.DrawFn) -> PercentageParams:
    raw: dict[str, Any] = {"rate": str(draw(st.decimals(0, 50, places=3)))}
    if draw(st.booleans()):
        raw["fixed_amount"] = str(draw(amounts))
    elif draw(st.booleans()):
        raw["free_units_per_total_aggregation"] = str(draw(quantities))
    return percentage(**raw)


@settings(max_examples=300)
@given(percentage_params(), quantities, quantities, st.integers(0, 50), st.integers(0, 50))
def test_percentage_is_monotone_in_amount_and_events(
    params: PercentageParams, a: Decimal, b: Decimal, m: int, n: int
) -> None:
    (low, high), (few, many) = sorted((a, b)), sorted((m, n))
    low_priced = PERCENTAGE.price(Usage(low, few), params, CTX)
    high_priced = PERCENTAGE.price(Usage(high, many), params, CTX)
    assert low_priced.amount <= high_priced.amount
    assert total(high_priced.parts) == high_priced.amount
    assert PERCENTAGE.price(Usage.of(D(0)), params, CTX).amount == 0


@settings(max_examples=300)
@given(
    st.decimals(0, 10, places=2),
    st.one_of(st.none(), amounts),
    st.one_of(st.none(), amounts),
    st.one_of(st.none(), amounts),
    st.dictionaries(st.decimals(0, 1000, places=2), st.integers(1, 4), max_size=8),
)
def test_percentage_min_max_equals_clamping_every_event(
    rate: Decimal,
    fixed: Decimal | None,
    low: Decimal | None,
    high: Decimal | None,
    values: dict[Decimal, int],
) -> None:
    assume(low is not None or high is not None)
    if low is not None and high is not None:
        low, high = sorted((low, high))
    raw = {"rate": str(rate), "fixed_amount": fixed, "per_event_min": low, "per_event_max": high}
    params = percentage(**{k: str(v) for k, v in raw.items() if v is not None})
    expected = D(0)
    for value, count in values.items():
        for _ in range(count):
            fee = value * rate / 100 + (fixed or 0)
            if low is not None:
                fee = max(fee, low)
            if high is not None:
                fee = min(fee, high)
            expected += fee
    usage = Usage(
        sum((v * c for v, c in values.items()), D(0)), sum(values.values()), values=values
    )
    priced = PERCENTAGE.price(usage, params, CTX)
    assert priced.amount == expected == total(priced.parts)


def lago_event_by_event(events: list[tuple[int, Decimal]], params: PercentageParams) -> Decimal:
    """lago-api's per-transaction loop over events already in time order: the first N cost
    nothing, every other one rate x value + fixed, clamped to the per-event min / max."""
    total_fee = D(0)
    for i, (_, value) in enumerate(events):
        if i < params.free_units_per_events:
            continue
        fee = value * params.rate / 100 + (params.fixed_amount or 0)
        if params.per_event_min is not None:
            fee = max(fee, params.per_event_min)
        if params.per_event_max is not None:
            fee = min(fee, params.per_event_max)
        total_fee += fee
    return total_fee


events_in_cells = st.lists(st.tuples(st.integers(0, 4), st.decimals(0, 1000, places=2)), max_size=12)


@st.composite
def free_event_params(draw: st.DrawFn) -> PercentageParams:
    raw: dict[str, Any] = {"rate": str(draw(st.decimals(0, 50, places=3))),
                           "free_units_per_events": draw(st.integers(0, 8))}
    for key in ("fixed_amount", "per_event_min", "per_event_max"):
        if draw(st.booleans()):
            raw[key] = str(draw(amounts))
    if "per_event_min" in raw and "per_event_max" in raw:
        raw["per_event_min"], raw["per_event_max"] = sorted((raw["per_event_min"], raw["per_event_max"]), key=D)
    return percentage(**raw)


@settings(max_examples=400)
@given(free_event_params(), events_in_cells, st.randoms(use_true_random=False), st.tuples(st.integers(0, 4),
       st.decimals(0, 1000, places=2)))
def test_free_events_are_the_first_events_up_to_the_order_inside_a_cell(
    params: PercentageParams, events: list[tuple[int, Decimal]], rnd: Any, extra: tuple[int, Decimal]
) -> None:
    # Buckets keep time order between 15-minute cells, not inside one. Whatever the events' real
    # order inside their cells: the amount is never more than Lago's event-by-event rule gives, it
    # IS that rule's amount for one real order (the free events' cell with its largest values
    # first), and it equals the rule whenever that cell holds no paying event.
    usage = usage_of_events(*((c, str(v)) for c, v in events))
    ours = PERCENTAGE.price(usage, params, CTX)
    assert ours.amount == total(ours.parts)
    real = sorted(events, key=lambda e: (e[0], rnd.random()))
    assert ours.amount <= lago_event_by_event(real, params)
    largest_first = sorted(events, key=lambda e: (e[0], -e[1]))
    assert ours.amount == lago_event_by_event(largest_first, params)
    n = params.free_units_per_events
    if n >= len(events) or n == 0 or real[n - 1][0] != real[n][0]:
        assert ours.amount == lago_event_by_event(real, params)
    more = usage_of_events(*((c, str(v)) for c, v in [*events, extra]))
    assert PERCENTAGE.price(more, params, CTX).amount >= ours.amount  # an event more never costs less
    if params.per_event_min is None and params.per_event_max is None:  # without the values
        plain = usage_of_events(*((c, str(v)) for c, v in events), keep_values=False)
        assert PERCENTAGE.price(plain, params, CTX).amount <= ours.amount


@st.composite
def matrix_usage(draw: st.DrawFn) -> tuple[MatrixParams, Usage]:
    regions, types = ["eu", "us", None], ["m5", "c6", None]
    rows = [
        {"match": {"region": r, "instance_type": t}, "unit_amount": str(draw(amounts))}
        for r in regions for t in types if draw(st.booleans())
    ] or [{"match": {"region": "eu", "instance_type": "m5"}, "unit_amount": "1"}]
    params = MATRIX.parse(
        {"dimensions": ["region", "instance_type"], "prices": rows,
         "default_unit_amount": str(draw(amounts))}, PATH)
    groups = {
        group(r, t): draw(quantities) for r in regions for t in types if draw(st.booleans())
    }
    return params, Usage(sum(groups.values(), D(0)), groups=groups)


@settings(max_examples=200)
@given(matrix_usage(), quantities)
def test_matrix_parts_add_up_and_grow_with_any_group(
    case: tuple[MatrixParams, Usage], extra: Decimal
) -> None:
    params, usage = case
    priced = MATRIX.price(usage, params, CTX)
    assert priced.amount == total(priced.parts)
    assert sum((p.units for p in priced.parts), D(0)) == usage.quantity
    for key in usage.groups:
        grown = {**usage.groups, key: usage.groups[key] + extra}
        more = MATRIX.price(Usage(usage.quantity + extra, groups=grown), params, CTX)
        assert more.amount >= priced.amount
    zero = {key: D(0) for key in usage.groups}
    assert MATRIX.price(Usage(D(0), groups=zero), params, CTX) == Priced(D(0), None)
