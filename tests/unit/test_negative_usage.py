"""Net negative usage in a period (refunds exceed usage) is billed as zero with a note, never as a
credit and never as an error that stops the close (docs/decisions.md, 2026-12-01)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from meterbill.domain.charges import PricingContext, Usage
from meterbill.domain.periods import Period
from meterbill.domain.plans import parse_plan
from meterbill.domain.rating import rate

OCT = Period(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc), 0)


def test_net_negative_usage_is_priced_as_no_usage_and_keeps_its_quantity() -> None:
    plan = parse_plan("p", {"currency": "USD", "interval": "month", "charges": [
        {"meter": "tokens", "model": "graduated",
         "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}]},
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.50", "min_amount": "2.00"},
        {"meter": "gb", "model": "per_unit", "unit_amount": "1", "free_units": "10"}]})
    usages = {"tokens": Usage(Decimal(-200), 3), "calls": Usage(Decimal(-4), 4), "gb": Usage(Decimal(-1), 1)}
    rated = rate(plan, usages, OCT, OCT, PricingContext("USD", "UTC"))
    got = {ln.meter: (ln.quantity, ln.amount, [p.label for p in ln.parts]) for ln in rated.lines}
    assert got["tokens"] == (Decimal(-200), Decimal("0.00"), ["net usage -200 is below zero: billed as zero"])
    assert got["calls"][:2] == (Decimal(-4), Decimal("2.00"))  # the charge's minimum, as with no usage
    assert got["gb"][:2] == (Decimal(-1), Decimal("0"))
    assert rated.subtotal == Decimal("2.00")
