"""keep_values meters: buckets keep the exact multiset of event values, so the percentage
model can clamp each event's fee (per_event_min / per_event_max) from buckets alone."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain.charges import Part, PricingContext
from meterbill.domain.charges.percentage import Percentage
from meterbill.domain.errors import InvalidField
from meterbill.domain.events import Event
from meterbill.domain.meters import BucketState, parse_meter, usage_of

D = Decimal
CTX = PricingContext("USD", "UTC")
PERCENTAGE = Percentage()
AMOUNTS = {"event_type": "payment", "aggregation": "sum", "property": "amount", "keep_values": True}
METER = parse_meter("amounts", AMOUNTS)


def events(values: list[Decimal]) -> list[Event]:
    return [Event(f"e{i}", "c", "payment", 1_790_000_000_000 + i, {"amount": v}, f"d{i}")
            for i, v in enumerate(values)]


def state_of(values: list[Decimal]) -> BucketState:
    s = BucketState()
    for e in events(values):
        s.add(METER, e)
    return s


def test_keep_values_is_for_sum_meters_and_part_of_the_semantics() -> None:
    assert METER.keep_values and METER.semantics() != parse_meter("amounts", {**AMOUNTS, "keep_values": False}).semantics()
    assert parse_meter("m", {"event_type": "t", "aggregation": "sum", "property": "x"}).keep_values is False
    for raw, problem in [({"aggregation": "count", "property": None}, "is only for aggregation 'sum' (this meter uses 'count')"),
                         ({"aggregation": "max"}, "is only for aggregation 'sum' (this meter uses 'max')"),
                         ({"keep_values": "yes"}, "must be true or false")]:
        with pytest.raises(InvalidField) as err:
            parse_meter("m", {**AMOUNTS, **raw})
        assert (err.value.field, err.value.problem) == ("keep_values", problem)


def test_bucket_keeps_each_value_once_per_event() -> None:
    s = state_of([D("10"), D("2.50"), D("10.0"), D("0")])
    # 10 and 10.0 are the same amount: one value, two events
    assert s.values == {D("10"): 2, D("2.50"): 1, D("0"): 1} and s.sum == D("22.50") and s.count == 4
    plain = BucketState()
    plain.add(parse_meter("m", {**AMOUNTS, "keep_values": False}), events([D("10")])[0])
    assert plain.values == {}  # meters without keep_values keep no values


def test_per_event_clamp_from_buckets() -> None:
    # 2.9 % + 0.30 per payment, each fee at least 0.50 and at most 5.00 (Lago's per-transaction
    # minimum / maximum; Lago's page has no worked example, so computed by hand):
    #   5.00   -> 0.145 + 0.30 = 0.445  -> 0.50 (+0.055)
    #   100.00 -> 2.90 + 0.30  = 3.20
    #   100.00 -> 3.20 (second bucket)
    #   500.00 -> 14.50 + 0.30 = 14.80 -> 5.00 (-9.80)
    #   0.99   -> 0.02871 + 0.30 = 0.32871 -> 0.50 (+0.17129)
    # total 0.50 + 3.20 + 3.20 + 5.00 + 0.50 = 12.40
    params = PERCENTAGE.parse({"rate": "2.9", "fixed_amount": "0.30", "per_event_min": "0.50",
                               "per_event_max": "5.00"}, "charges[0]")
    buckets = [(0, "", state_of([D("5.00"), D("100.00")])), (900, "", state_of([D("100.00"), D("500.00"), D("0.99")]))]
    usage = usage_of(METER, buckets, detail=False)
    assert usage.values == {D("5"): 1, D("100"): 2, D("500"): 1, D("0.99"): 1}
    priced = PERCENTAGE.price(usage, params, CTX)
    assert priced.amount == D("12.40")
    assert priced.parts == (
        Part("2.9% of 705.99", D("705.99"), D("0.029"), D("20.47371")),
        Part("0.30 x 5 events", D(5), D("0.30"), D("1.50")),
        Part("per-event minimum 0.50 (2 events)", D(2), None, D("0.22629")),
        Part("per-event maximum 5.00 (1 events)", D(1), None, D("-9.80")),
    )
    assert usage_of(parse_meter("m", {**AMOUNTS, "keep_values": False}), buckets).values is None


amounts = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False)
money = st.decimals(min_value=0, max_value=50, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(st.lists(amounts, max_size=40), st.lists(st.integers(0, 4), min_size=40, max_size=40),
       st.decimals(min_value=0, max_value=100, places=3), st.none() | money, st.none() | money, st.none() | money)
def test_multiset_clamp_equals_clamping_each_event(vals: list[Decimal], split: list[int], rate: Decimal,
                                                  fixed: Decimal | None, low: Decimal | None,
                                                  high: Decimal | None) -> None:
    if low is not None and high is not None and high < low:
        low, high = high, low
    raw = {"rate": str(rate), "fixed_amount": fixed, "per_event_min": low, "per_event_max": high}
    params = PERCENTAGE.parse({k: str(v) for k, v in raw.items() if v is not None}, "c")
    parts = [BucketState() for _ in range(5)]
    for i, e in enumerate(events(vals)):
        parts[split[i]].add(METER, e)
    usage = usage_of(METER, [(900 * i, "", s) for i, s in enumerate(parts)], detail=False)
    expected = D(0)
    for v in vals:  # one event at a time, the rule as written
        fee = v * rate / 100 + (fixed or 0)
        if low is not None and fee < low:
            fee = low
        elif high is not None and fee > high:
            fee = high
        expected += fee
    assert PERCENTAGE.price(usage, params, CTX).amount == expected


@given(st.lists(st.lists(amounts, max_size=12), min_size=3, max_size=3))
def test_merging_value_multisets_is_associative_and_commutative(groups: list[list[Decimal]]) -> None:
    def merged(*states: BucketState) -> dict[Decimal, int]:
        out = BucketState()
        for s in states:
            out.merge(s)
        return out.values

    a, b, c = (state_of(g) for g in groups)
    ab = BucketState()
    ab.merge(a)
    ab.merge(b)
    bc = BucketState()
    bc.merge(b)
    bc.merge(c)
    assert merged(ab, c) == merged(a, bc) == merged(c, b, a) == merged(b, a, c)
    assert merged(a, b, c) == Counter(v for g in groups for v in g)
    assert sum(merged(a, b, c).values()) == a.count + b.count + c.count
