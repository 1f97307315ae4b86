"""Rating with all 7 charge models mixed (pure domain): the real ``rate()`` on one plan using
per_unit, graduated, package, volume, percentage, matrix and time_of_use, with the per-group
and per-bucket detail matrix and time_of_use price. Two figures: time_of_use usage in 4 hours a
day (~448 buckets a month), and for a customer active around the clock (every bucket)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from bench import median_seconds, report
from bench.rating import customer_period

N = 256  # distinct customer periods, cycled
GPUS = ("h100", "a100", "a10g", "t4", None)  # None: events without the property
TOU_HOURS = (2, 3, 9, 14)  # local-ish hours a customer's batch jobs run: 4 hours x 4 buckets a day

PLAN = {
    "currency": "USD", "interval": "month", "base_fee": "99.00", "name": "Mixed",
    "minimum_commitment": "150.00",
    "charges": [
        {"meter": "api_calls", "model": "per_unit", "unit_amount": "0.0004", "unit": "calls"},
        {"meter": "llm_tokens", "model": "graduated", "free_units": "1000000", "tiers": [
            {"up_to": "10000000", "unit_amount": "0.00002"}, {"up_to": "100000000", "unit_amount": "0.000015"},
            {"up_to": None, "unit_amount": "0.00001"}]},
        {"meter": "api_requests", "model": "package", "package_size": "10000", "package_amount": "4.00"},
        {"meter": "storage_gb", "model": "volume", "tiers": [
            {"up_to": "1000", "unit_amount": "0.10"}, {"up_to": None, "unit_amount": "0.07", "flat_amount": "5"}]},
        {"meter": "payments", "model": "percentage", "rate": "2.9", "fixed_amount": "0.30"},
        {"meter": "gpu_seconds", "model": "matrix", "dimensions": ["gpu"], "default_unit_amount": "0.0005",
         "prices": [{"match": {"gpu": "h100"}, "unit_amount": "0.0011"},
                    {"match": {"gpu": "a100"}, "unit_amount": "0.0008"},
                    {"match": {"gpu": "a10g"}, "unit_amount": "0.0003"}]},
        {"meter": "batch_kwh", "model": "time_of_use", "default_unit_amount": "0.09",
         "holidays": ["2026-11-26", "2026-12-25"], "holiday_unit_amount": "0.05",
         "windows": [{"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00",
                      "unit_amount": "0.21"},
                     {"name": "weekend", "days": ["sat", "sun"], "from": "00:00", "to": "24:00",
                      "unit_amount": "0.07"}]},
    ],
}


def _usages(rng: random.Random, period: Any, around_the_clock: bool = False) -> dict[str, Any]:
    from meterbill.domain.charges import Usage

    def dec(lo: float, hi: float, places: int = 0) -> Decimal:
        return Decimal(f"{rng.uniform(lo, hi):.{places}f}")

    groups = {(("gpu", g),): dec(0, 20_000, 1) for g in rng.sample(GPUS, rng.randint(1, len(GPUS)))}
    start = int(period.start.timestamp()) // 900 * 900
    days = int((period.end - period.start).total_seconds()) // 86_400
    if around_the_clock:  # every 15-minute bucket of the period
        kwh = tuple((t, dec(0, 5, 3)) for t in range(start, int(period.end.timestamp()), 900))
    else:
        kwh = tuple((start + d * 86_400 + h * 3600 + q * 900, dec(0, 5, 3))
                    for d in range(days) for h in TOU_HOURS for q in range(4))
    payments = dec(0, 50_000, 2)
    return {
        "api_calls": Usage(dec(0, 250_000), rng.randint(0, 250_000)),
        "llm_tokens": Usage(dec(0, 150_000_000), rng.randint(0, 50_000)),
        "api_requests": Usage(dec(0, 1_000_000), rng.randint(0, 1_000_000)),
        "storage_gb": Usage(dec(0, 5_000, 2), 30),
        "payments": Usage(payments, int(payments // 40)),
        "gpu_seconds": Usage(sum(groups.values(), Decimal(0)), 100, groups),
        "batch_kwh": Usage(sum((v for _, v in kwh), Decimal(0)), len(kwh), {}, kwh),
    }


def _workload(around_the_clock: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    from meterbill.domain.charges import PricingContext
    from meterbill.domain.plans import parse_plan

    plan = parse_plan("mixed", PLAN)
    assert {c.model.name for c in plan.charges} == {"per_unit", "graduated", "package", "volume", "percentage",
                                                    "matrix", "time_of_use"}
    rng = random.Random(13)
    cases = []
    for i in range(N):
        tz, _, period, full = customer_period(i)
        cases.append({"period": period, "full": full, "usages": _usages(rng, period, around_the_clock),
                      "ctx": PricingContext("USD", tz), "units": {"api_calls": "calls", "batch_kwh": "kWh"}})
    return plan, cases


def _measure(around_the_clock: bool) -> None:
    from meterbill.domain.rating import rate

    plan, cases = _workload(around_the_clock)
    priced = {ln.meter for c in cases for ln in rate(plan, c["usages"], c["period"], c["full"], c["ctx"]).lines
              if ln.amount_unrounded > 0}
    assert priced >= {ch.meter for ch in plan.charges}, priced  # every model prices real amounts

    def rate_all() -> None:
        for c in cases:
            rate(plan, c["usages"], c["period"], c["full"], c["ctx"], meter_units=c["units"])

    buckets = sum(len(c["usages"]["batch_kwh"].buckets) for c in cases) / N
    groups = sum(len(c["usages"]["gpu_seconds"].groups) for c in cases) / N
    t = median_seconds(rate_all, repeats=7, number=5 if not around_the_clock else 2, warmup=2)
    name, active = (("rating_mixed_models_around_the_clock_customer_periods_per_s", "active around the clock")
                    if around_the_clock else
                    ("rating_mixed_models_customer_periods_per_s", f"{len(TOU_HOURS)} h a day"))
    report(name, N / t.median, "periods/s", ">= 20000",
           note=f"1 core; base fee + 7 charges, one per model; matrix over {groups:.1f} gpu groups, time_of_use over "
                f"{buckets:.0f} 15-min buckets per period ({active}), 2 windows + holidays; {t.spread(N)}")


# A book of customers on different plans that mix the models, as a SaaS price list does: every
# model is used, each plan uses two or three, and one plan in seven uses all seven.
BOOK = (("api", ("api_calls", "llm_tokens")), ("llm", ("llm_tokens", "api_requests", "storage_gb")),
        ("payments", ("payments", "api_calls")), ("gpu", ("gpu_seconds", "storage_gb")),
        ("energy", ("batch_kwh", "api_requests")), ("data", ("storage_gb", "api_calls", "llm_tokens")),
        ("all", tuple(c["meter"] for c in PLAN["charges"])))


def _measure_book() -> None:
    from meterbill.domain.plans import parse_plan
    from meterbill.domain.rating import rate

    _, cases = _workload()
    plans = [parse_plan(code, {**PLAN, "charges": [c for c in PLAN["charges"] if c["meter"] in meters]})
             for code, meters in BOOK]
    book = [(plans[i % len(plans)], c) for i, c in enumerate(cases)]

    def rate_all() -> None:
        for plan, c in book:
            rate(plan, c["usages"], c["period"], c["full"], c["ctx"], meter_units=c["units"])

    t = median_seconds(rate_all, repeats=7, number=5, warmup=2)
    report("rating_mixed_book_customer_periods_per_s", N / t.median, "periods/s", ">= 20000",
           note=f"1 core; {len(plans)} plans mixing all 7 models (2-3 charges each, one plan with all 7), "
                f"customers spread evenly over them; time_of_use as above; {t.spread(N)}")


def run() -> None:
    _measure_book()
    _measure(around_the_clock=False)
    _measure(around_the_clock=True)
