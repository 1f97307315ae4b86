"""The aggregator's last defence: a bucket result DynamoDB cannot store exactly (more than 38
significant digits, out of its exponent range) is never rounded or written; the contribution that
would cause it is left out, deterministically, and every other one is applied."""

from __future__ import annotations

from decimal import Decimal

from meterbill.domain.events import Event
from meterbill.domain.meters import BucketState, parse_meter
from meterbill.services.aggregation import add_exactly, add_storable, storable_number

SUM = parse_meter("tokens", {"event_type": "api.call", "aggregation": "sum", "property": "tokens"})


def contribution(i: int, value: str) -> tuple[str, Event, object]:
    return (str(100 + i), Event(f"e{i}", "acme", "api.call", 1_700_000_000_000, {"tokens": Decimal(value)}, "h"), SUM)


def test_dynamodb_number_limits() -> None:
    assert storable_number(Decimal("9" * 38)) and not storable_number(Decimal("9" * 39))
    assert storable_number(Decimal("1e125")) and not storable_number(Decimal("1e126"))
    assert storable_number(Decimal("1e-130")) and not storable_number(Decimal("1e-131"))
    assert storable_number(Decimal(0)) and storable_number(None) and not storable_number(Decimal("NaN"))


def test_a_sum_needing_more_than_38_digits_is_refused_not_rounded() -> None:
    state = BucketState()
    assert not add_exactly(state, [contribution(1, "1e20"), contribution(2, "1e-20")])   # 41 digits


def test_only_the_contribution_that_breaks_the_bucket_is_left_out() -> None:
    todo = [contribution(1, "1e20"), contribution(2, "1e-20"), contribution(3, "5")]
    state, dead = add_storable(BucketState(), todo)
    assert [c[1].id for c in dead] == ["e2"]
    assert (state.count, state.sum) == (2, Decimal("100000000000000000005"))
    again, dead_again = add_storable(BucketState(), todo)       # a retried batch decides the same
    assert (again.sum, [c[1].id for c in dead_again]) == (state.sum, ["e2"])
