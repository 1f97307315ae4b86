"""Customer contract terms (pure): price overrides merged into a plan, and the plan history that
splits a billing period at each plan change."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from meterbill.domain.contracts import change_at, effective_plan, entry, rebase, split, with_change
from meterbill.domain.errors import InvalidField
from meterbill.domain.periods import Period

UTC = timezone.utc
PLAN = {"currency": "USD", "base_fee": "30.00", "minimum_commitment": "100", "charges": [
    {"meter": "calls", "model": "per_unit", "unit_amount": "0.10", "display_name": "API calls"},
    {"meter": "tokens", "model": "graduated",
     "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}]}]}


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, tzinfo=UTC)


def test_overrides_replace_plan_terms_and_merge_into_charges() -> None:
    plan = effective_plan("pro", PLAN, {"base_fee": "20.00", "charges": {"calls": {"unit_amount": "0.08"}}})
    assert (plan.base_fee, plan.minimum_commitment, plan.overridden) == (Decimal("20.00"), 100, {"base_fee"})
    calls, tokens = plan.charges
    assert (calls.params.unit_amount, calls.display_name, calls.override) == (Decimal("0.08"), "API calls", True)
    assert tokens.override is False and len(tokens.params.tiers) == 2
    assert PLAN["charges"][0]["unit_amount"] == "0.10"  # the plan document is not changed


def test_override_with_another_model_brings_its_own_params() -> None:
    plan = effective_plan("pro", PLAN, {"charges": {"tokens": {"model": "per_unit", "unit_amount": "0.004"}}})
    tokens = plan.charges[1]
    assert (tokens.model.name, tokens.params.unit_amount, tokens.override) == ("per_unit", Decimal("0.004"), True)
    tiered = effective_plan("pro", PLAN, {"charges": {"tokens": {"tiers": [{"up_to": None, "unit_amount": "0.002"}]}}})
    assert [t.unit_amount for t in tiered.charges[1].params.tiers] == [Decimal("0.002")]


def test_no_overrides_is_the_plan() -> None:
    plan = effective_plan("pro", PLAN, {})
    assert plan.overridden == frozenset() and not any(c.override for c in plan.charges)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"charges": {"calls": {"unit_amount": "cheap"}}}, "price_overrides.charges.calls.unit_amount"),
    ({"charges": {"calls": {"unit_amount": 0.08}}}, "price_overrides.charges.calls.unit_amount"),  # JSON float
    ({"charges": {"tokens": {"tiers": [{"up_to": "5", "unit_amount": "1"}]}}},
     "price_overrides.charges.tokens.tiers[0].up_to"),                      # last tier must be unbounded
    ({"charges": {"calls": {"model": "bogus"}}}, "price_overrides.charges.calls.model"),
    ({"charges": {"storage": {"unit_amount": "1"}}}, "price_overrides.charges.storage"),  # plan does not charge it
    ({"charges": {"calls": {"meter": "tokens"}}}, "price_overrides.charges.calls.meter"),
    ({"charges": {"calls": {}}}, "price_overrides.charges.calls"),
    ({"charges": {"tokens": {"unit_amount": "0.001"}}}, "price_overrides.charges.tokens"),  # graduated ignores it
    ({"charges": {"calls": {"unit_amount": "0.10"}}}, "price_overrides.charges.calls"),     # the plan's own price
    ({"charges": ["calls"]}, "price_overrides.charges"),
    ({"base_fee": "-5"}, "price_overrides.base_fee"),
    ({"base_fee_timing": "monthly"}, "price_overrides.base_fee_timing"),
    ({"tax_inclusive": True}, "price_overrides.tax_inclusive"),            # tax is not a contract term
    ({"currency": "EUR"}, "price_overrides.currency"),
])
def test_override_errors_name_the_override_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        effective_plan("pro", PLAN, overrides)
    assert err.value.field == field


def test_a_change_takes_effect_on_the_next_bucket_boundary() -> None:
    assert change_at(at(16, 12, 7)) == at(16, 12, 15)
    assert change_at(at(16, 12, 15)) == at(16, 12, 15)
    assert change_at(datetime(2026, 10, 16, 12, 0, 0, 1000, tzinfo=UTC)) == at(16, 12, 15)


HISTORY = [entry("basic", at(1), {}), entry("pro", at(11), {"base_fee": "1"}), entry("max", at(21), {})]
OCT = Period(at(1), datetime(2026, 11, 1, tzinfo=UTC), 0)


def test_split_cuts_a_period_at_every_change_inside_it() -> None:
    parts = split(HISTORY, OCT)
    assert [(e["plan"], p.start.day, p.end.day) for e, p in parts] == [("basic", 1, 11), ("pro", 11, 21),
                                                                      ("max", 21, 1)]
    nov = Period(OCT.end, datetime(2026, 12, 1, tzinfo=UTC), 1)
    assert [(e["plan"], p) for e, p in split(HISTORY, nov)] == [("max", nov)]  # a change before the period
    late = Period(at(11), OCT.end, 0)
    assert [e["plan"] for e, _ in split(HISTORY, late)] == ["pro", "max"]      # a change at its start


def test_a_change_replaces_later_changes_and_rebase_moves_the_start() -> None:
    changed = with_change(HISTORY, entry("ent", at(15), {}))
    assert [(e["plan"], e["from"]) for e in changed] == [("basic", "2026-10-01T00:00:00Z"),
                                                         ("pro", "2026-10-11T00:00:00Z"),
                                                         ("ent", "2026-10-15T00:00:00Z")]
    assert [e["plan"] for e in with_change(HISTORY, entry("ent", at(1), {}))] == ["ent"]
    assert [(e["plan"], e["from"][:10]) for e in rebase(HISTORY, at(12))] == [("pro", "2026-10-12"),
                                                                              ("max", "2026-10-21")]
    assert rebase(HISTORY, datetime(2026, 9, 1, tzinfo=UTC))[0]["from"] == "2026-09-01T00:00:00Z"
