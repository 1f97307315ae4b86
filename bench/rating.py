"""Rating (pure domain): price customer periods, with and without the bucket roll-up."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from bench import median_seconds, report

N = 256  # distinct customer periods, cycled
ROLLUP_STATES = 6  # bucket states per meter ("a handful")

PLAN = {
    "currency": "USD", "interval": "month", "base_fee": "49.00", "name": "Scale",
    "charges": [
        {"meter": "api_calls", "model": "graduated", "display_name": "API calls", "tiers": [
            {"up_to": "10000", "unit_amount": "0.001"}, {"up_to": "100000", "unit_amount": "0.0008"},
            {"up_to": None, "unit_amount": "0.0005"}]},
        {"meter": "llm_tokens", "model": "graduated", "tiers": [
            {"up_to": "1000000", "unit_amount": "0.00002"}, {"up_to": "10000000", "unit_amount": "0.000015"},
            {"up_to": "100000000", "unit_amount": "0.00001"}, {"up_to": None, "unit_amount": "0.000008"}]},
        {"meter": "gpu_seconds", "model": "graduated", "tiers": [
            {"up_to": "3600", "unit_amount": "0.0011"},
            {"up_to": "36000", "unit_amount": "0.0009", "flat_amount": "2.00"},
            {"up_to": None, "unit_amount": "0.0007", "flat_amount": "10.00"}]},
        {"meter": "storage_gb", "model": "graduated", "tiers": [
            {"up_to": "100", "unit_amount": "0.10"}, {"up_to": "1000", "unit_amount": "0.08"},
            {"up_to": "10000", "unit_amount": "0.05"}, {"up_to": None, "unit_amount": "0.03"}]},
        {"meter": "active_users", "model": "graduated", "tiers": [
            {"up_to": "10", "unit_amount": "0"}, {"up_to": "100", "unit_amount": "5", "flat_amount": "20"},
            {"up_to": None, "unit_amount": "3"}]},
    ],
}
AGGREGATION = {"api_calls": "count", "llm_tokens": "sum", "gpu_seconds": "sum", "storage_gb": "max",
               "active_users": "unique_count"}
# Typical quantity ranges per meter: some land in the first tier, some run past the last bound.
RANGE = {"api_calls": (0, 250_000), "llm_tokens": (0, 150_000_000), "gpu_seconds": (0, 60_000),
         "storage_gb": (0, 15_000), "active_users": (0, 180)}
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")


def customer_period(i: int) -> tuple[str, datetime, Any, Any]:
    """Customer ``i``'s time zone, billing anchor, billed period and full period (November 2026,
    anchors spread over the month; 1 in 4 started mid-period: prorated fees)."""
    from meterbill.domain.periods import Period, period_containing

    tz = ZONES[i % len(ZONES)]
    anchor = datetime(2026, 1 + i % 12, 1 + i % 28, tzinfo=timezone.utc)
    full = period_containing(anchor, "month", tz, datetime(2026, 11, 15, tzinfo=timezone.utc))
    start = full.start + timedelta(days=9, hours=i % 24) if i % 4 == 0 else full.start
    return tz, anchor, Period(start, full.end, full.index), full


def _states(rng: random.Random, meter: str) -> list[Any]:
    """A handful of bucket states whose roll-up lands somewhere in the meter's range."""
    from meterbill.domain.meters import BucketState

    lo, hi = RANGE[meter]
    agg = AGGREGATION[meter]
    out = []
    for _ in range(ROLLUP_STATES):
        share = rng.uniform(lo, hi) / ROLLUP_STATES
        st = BucketState(count=int(share))
        if agg == "sum":
            st.sum = Decimal(f"{share:.3f}")
        elif agg == "max":
            st.max = st.min = Decimal(f"{share * ROLLUP_STATES:.2f}")
        elif agg == "unique_count":
            st.uniques = {f"s:user-{rng.randrange(int(hi))}" for _ in range(max(1, int(share)))}
        out.append(st)
    return out


def _workload() -> tuple[Any, list[dict[str, Any]]]:
    from meterbill.domain.charges import PricingContext, Usage
    from meterbill.domain.instants import iso
    from meterbill.domain.meters import quantity
    from meterbill.domain.plans import parse_plan

    plan = parse_plan("scale", PLAN)
    rng = random.Random(11)
    cases = []
    for i in range(N):
        tz, anchor, period, full = customer_period(i)
        states = {m: _states(rng, m) for m in AGGREGATION}
        cases.append({"customer": {"billing_anchor": iso(anchor), "timezone": tz}, "period": period,
                      "full": full, "states": states,
                      "usages": {m: Usage.of(quantity(AGGREGATION[m], s)) for m, s in states.items()},
                      "ctx": PricingContext("USD", tz)})
    return plan, cases


def run() -> None:
    from meterbill.domain.instants import parse_instant
    from meterbill.domain.charges import DETAILED
    from meterbill.domain.meters import parse_meter, usage_of
    from meterbill.domain.periods import full_period
    from meterbill.domain.rating import rate

    plan, cases = _workload()
    meters = {m: parse_meter(m, {"event_type": "x", "aggregation": a, "property": None if a == "count" else "v"})
              for m, a in AGGREGATION.items()}
    start_s = 1_793_000_000

    def rate_only() -> None:
        for c in cases:
            rate(plan, c["usages"], c["period"], c["full"], c["ctx"])

    def with_rollup() -> None:
        # BillingService.rate_period minus its I/O (bucket query, catalog lookup).
        for c in cases:
            usages = {ch.meter: usage_of(meters[ch.meter], [(start_s + 900 * k, "", st) for k, st in
                                                            enumerate(c["states"][ch.meter])], ch.model.name in DETAILED)
                      for ch in plan.charges}
            customer = c["customer"]
            anchor = parse_instant(customer["billing_anchor"], "billing_anchor")
            rate(plan, usages, c["period"], full_period(anchor, plan.interval, customer["timezone"], c["period"]),
                 c["ctx"])

    t = median_seconds(rate_only, repeats=7, number=5, warmup=2)
    report("rating_customer_periods_per_s", N / t.median, "periods/s", ">= 20000",
           note=f"base fee + 5 graduated meters, 3-4 tiers each; {t.spread(N)}")
    t = median_seconds(with_rollup, repeats=7, number=3, warmup=1)
    report("rating_with_rollup_customer_periods_per_s", N / t.median, "periods/s", ">= 20000",
           note=f"+ usage_of() over {ROLLUP_STATES} bucket states per meter + full_period; {t.spread(N)}")
