"""meterbill.domain.charges.time_of_use: local-time windows, holidays, daylight saving.

2026 transitions used below (tzdb): Europe/Berlin springs forward on Sun 29 March at
01:00 UTC (02:00 CET -> 03:00 CEST; a 23-hour day) and falls back on Sun 25 October at
01:00 UTC (03:00 CEST -> 02:00 CET; a 25-hour day). America/New_York springs forward on
Sun 8 March at 07:00 UTC and falls back on Sun 1 November at 06:00 UTC. Asia/Kolkata is
+05:30 all year, Asia/Kathmandu +05:45.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain.charges import Part, Priced, PricingContext, Usage, time_of_use
from meterbill.domain.charges.time_of_use import TimeOfUse, TimeOfUseParams
from meterbill.domain.errors import InvalidField

D = Decimal
UTC = timezone.utc  # noqa: UP017
PATH = "plan.charges[1]"
TOU = TimeOfUse()
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def ts(text: str) -> int:
    """Epoch seconds of a UTC time written "2026-03-29T01:00"."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def window(name: str, days: list[str], start: str, end: str, unit: str) -> dict[str, Any]:
    return {"name": name, "days": days, "from": start, "to": end, "unit_amount": unit}


def params(*windows: dict[str, Any], default: str = "0.08", **extra: Any) -> TimeOfUseParams:
    raw = {"model": "time_of_use", "windows": list(windows), "default_unit_amount": default}
    return TOU.parse({**raw, **extra}, PATH)


def usage(buckets: list[tuple[int, Decimal]]) -> Usage:
    buckets = sorted(buckets)
    return Usage(sum((v for _, v in buckets), D(0)), len(buckets), buckets=tuple(buckets))


def local_day(zone: str, day: str) -> list[tuple[int, Decimal]]:
    """One unit in every 15-minute bucket of a whole LOCAL day (23, 24 or 25 hours)."""
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(day).replace(tzinfo=tz)
    end = (start + timedelta(days=1)).replace(tzinfo=tz)
    first, last = int(start.timestamp()), int(end.timestamp())
    return [(t, D(1)) for t in range(first, last, 900)]


def units(priced: Priced) -> dict[str, Decimal]:
    return {part.label.split(" (")[0]: part.units for part in priced.parts}


PEAK = window("peak", WEEKDAYS, "08:00", "20:00", "0.20")


def test_peak_and_default_in_utc() -> None:
    p = params(PEAK)
    priced = TOU.price(
        usage([(ts("2026-06-01T07:45"), D(10)), (ts("2026-06-01T08:00"), D(5)),
               (ts("2026-06-01T19:45"), D(1)), (ts("2026-06-01T20:00"), D(2)),
               (ts("2026-06-06T12:00"), D(3))]),  # Saturday
        p, PricingContext("USD", "UTC"))
    assert priced == Priced(D("2.40"), None, (), (
        Part("peak (Mon-Fri 08:00-20:00)", D(6), D("0.20"), D("1.20")),
        Part("other times", D(15), D("0.08"), D("1.20")),
    ))


# Sunday windows; the first one covers exactly the hour that DST skips or repeats.
SUNDAY = [
    window("changeover", ["sun"], "02:00", "03:00", "9"),
    window("night", ["sun"], "00:00", "06:00", "0.05"),
    window("day", ["sun"], "06:00", "24:00", "0.20"),
]


@pytest.mark.parametrize(
    ("zone", "day", "hours", "changeover"),
    [
        ("Europe/Berlin", "2026-03-29", 23, 0),  # spring forward: 02:00-03:00 never happens
        ("Europe/Berlin", "2026-10-25", 25, 8),  # fall back: 02:00-03:00 happens twice
        ("America/New_York", "2026-03-08", 23, 0),
        ("America/New_York", "2026-11-01", 25, 4),  # 01:00-02:00 repeats, not 02:00
        ("Europe/Berlin", "2026-06-07", 24, 4),
    ],
)
def test_dst_days_land_in_their_local_windows(
    zone: str, day: str, hours: int, changeover: int
) -> None:
    buckets = local_day(zone, day)
    assert len(buckets) == hours * 4
    priced = TOU.price(usage(buckets), params(*SUNDAY), PricingContext("EUR", zone))
    got = units(priced)
    assert got.get("changeover", D(0)) == changeover
    assert got["day"] == 18 * 4  # 06:00-24:00 is never shifted
    assert got["night"] == hours * 4 - 72 - changeover
    assert "other times" not in got
    assert priced.amount == sum((p.amount for p in priced.parts), D(0))


def test_new_york_repeated_hour_counts_both_occurrences() -> None:
    # 01:30 EDT (05:30 UTC) and 01:30 EST (06:30 UTC) on 1 November 2026.
    p = params(window("one-am", ["sun"], "01:00", "02:00", "1"), default="0")
    first, second = ts("2026-11-01T05:30"), ts("2026-11-01T06:30")
    priced = TOU.price(usage([(first, D(2)), (second, D(3))]), p,
                       PricingContext("USD", "America/New_York"))
    assert priced.parts == (Part("one-am (Sun 01:00-02:00)", D(5), D(1), D(5)),)


def test_berlin_spring_forward_edges() -> None:
    # 00:45 UTC = 01:45 CET (last bucket before the gap); 01:00 UTC = 03:00 CEST.
    p = params(window("before", ["sun"], "01:00", "02:00", "1"),
               window("after", ["sun"], "03:00", "04:00", "2"), default="100")
    priced = TOU.price(usage([(ts("2026-03-29T00:45"), D(1)), (ts("2026-03-29T01:00"), D(1))]),
                       p, PricingContext("EUR", "Europe/Berlin"))
    assert units(priced) == {"before": D(1), "after": D(1)}
    assert priced.amount == D(3)


@pytest.mark.parametrize(
    ("zone", "utc", "peak"),
    [
        ("Asia/Kolkata", "2026-06-01T02:15", False),  # 07:45 IST
        ("Asia/Kolkata", "2026-06-01T02:30", True),  # 08:00 IST
        ("Asia/Kolkata", "2026-06-01T14:15", True),  # 19:45 IST
        ("Asia/Kolkata", "2026-06-01T14:30", False),  # 20:00 IST
        ("Asia/Kolkata", "2026-06-05T18:15", False),  # Fri 23:45 IST
        ("Asia/Kolkata", "2026-06-07T20:30", False),  # Mon 02:00 IST, before 08:00
        ("Asia/Kolkata", "2026-06-08T02:30", True),  # Mon 08:00 IST
        ("Asia/Kathmandu", "2026-06-01T02:00", False),  # 07:45 NPT
        ("Asia/Kathmandu", "2026-06-01T02:15", True),  # 08:00 NPT
    ],
)
def test_half_and_quarter_hour_zones_split_exactly_at_local_hours(
    zone: str, utc: str, peak: bool
) -> None:
    priced = TOU.price(usage([(ts(utc), D(1))]), params(PEAK), PricingContext("INR", zone))
    assert units(priced) == ({"peak": D(1)} if peak else {"other times": D(1)})


def test_holidays_use_the_local_date_and_come_first() -> None:
    p = params(PEAK, holidays=["2026-12-25", "2027-01-01"], holiday_unit_amount="0.01")
    ctx = PricingContext("EUR", "Europe/Berlin")
    priced = TOU.price(usage([
        (ts("2026-12-24T23:30"), D(1)),  # 25 Dec 00:30 local: holiday although UTC says 24th
        (ts("2026-12-25T10:00"), D(2)),  # Friday 11:00 local: peak hours, but a holiday
        (ts("2026-12-25T23:00"), D(4)),  # 26 Dec 00:00 local: no longer a holiday
        (ts("2026-12-28T10:00"), D(8)),  # Monday peak
    ]), p, ctx)
    assert priced.parts == (
        Part("peak (Mon-Fri 08:00-20:00)", D(8), D("0.20"), D("1.60")),
        Part("holidays", D(3), D("0.01"), D("0.03")),
        Part("other times", D(4), D("0.08"), D("0.32")),
    )


def test_window_ending_at_midnight_and_split_windows_share_a_name() -> None:
    p = params(
        window("night", ["mon"], "22:00", "24:00", "0.05"),
        window("night", ["tue"], "00:00", "06:00", "0.05"),
        default="0.10",
    )
    ctx = PricingContext("USD", "UTC")
    priced = TOU.price(usage([
        (ts("2026-06-01T21:45"), D(1)),  # Mon 21:45: default
        (ts("2026-06-01T22:00"), D(1)),  # Mon 22:00: night
        (ts("2026-06-01T23:45"), D(1)),  # Mon 23:45: night (window ends at 24:00)
        (ts("2026-06-02T00:00"), D(1)),  # Tue 00:00: night (second window)
        (ts("2026-06-02T06:00"), D(1)),  # Tue 06:00: default
        (ts("2026-06-02T22:00"), D(1)),  # Tue 22:00: default (only Mondays)
    ]), p, ctx)
    assert priced.parts == (
        Part("night (Mon 22:00-24:00; Tue 00:00-06:00)", D(3), D("0.05"), D("0.15")),
        Part("other times", D(3), D("0.10"), D("0.30")),
    )


def test_overlapping_windows_first_wins() -> None:
    p = params(window("lunch", WEEKDAYS, "12:00", "14:00", "0.50"), PEAK)
    priced = TOU.price(usage([(ts("2026-06-01T12:15"), D(1)), (ts("2026-06-01T14:00"), D(1))]),
                       p, PricingContext("USD", "UTC"))
    assert units(priced) == {"lunch": D(1), "peak": D(1)}


def test_charge_timezone_overrides_the_customer_zone() -> None:
    p = params(PEAK, timezone="Asia/Tokyo")
    # 23:00 UTC Sunday = 08:00 Monday in Tokyo; in the customer's UTC it is Sunday night.
    priced = TOU.price(usage([(ts("2026-05-31T23:00"), D(1))]), p, PricingContext("JPY", "UTC"))
    assert units(priced) == {"peak": D(1)}


def test_day_labels() -> None:
    p = params(window("a", ["sun", "sat", "mon", "tue", "wed", "thu", "fri"], "00:00", "24:00",
                      "1"),
               window("b", ["mon", "wed"], "00:00", "01:00", "1"),
               window("c", ["sat", "sun"], "00:00", "01:00", "1"))
    assert p.labels == ("a (Mon-Sun 00:00-24:00)", "b (Mon, Wed 00:00-01:00)",
                        "c (Sat, Sun 00:00-01:00)", "holidays", "other times")


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"windows": []}, "windows", None),
        ({"windows": [{**PEAK, "from": "08:10"}]}, "windows[0].from",
         "must be on a 15-minute boundary (:00, :15, :30 or :45), the usage bucket width"),
        ({"windows": [{**PEAK, "to": "19:50"}]}, "windows[0].to", None),
        ({"windows": [{**PEAK, "from": "24:00"}]}, "windows[0].from",
         'must be a local time "HH:MM" from 00:00 to 23:45'),
        ({"windows": [{**PEAK, "to": "24:15"}]}, "windows[0].to",
         'must be a local time "HH:MM" from 00:00 to 24:00'),
        ({"windows": [{**PEAK, "to": "8:00"}]}, "windows[0].to", None),
        ({"windows": [{**PEAK, "from": 800}]}, "windows[0].from", None),
        ({"windows": [{**PEAK, "from": "22:00", "to": "06:00"}]}, "windows[0].to", None),
        ({"windows": [{**PEAK, "to": "08:00"}]}, "windows[0].to", None),
        ({"windows": [{**PEAK, "days": []}]}, "windows[0].days", None),
        ({"windows": [{**PEAK, "days": ["mon", "Tue"]}]}, "windows[0].days[1]", None),
        ({"windows": [{**PEAK, "days": ["mon", "mon"]}]}, "windows[0].days[1]", "repeats 'mon'"),
        ({"windows": [{**PEAK, "price": "1"}]}, "windows[0].price", None),
        ({"windows": [{**PEAK, "name": ""}]}, "windows[0].name", None),
        ({"windows": [{**PEAK, "unit_amount": 0.2}]}, "windows[0].unit_amount",
         'must be a decimal string such as "12.34", not a JSON float'),
        ({"windows": [{**PEAK, "unit_amount": "-0.2"}]}, "windows[0].unit_amount",
         "must not be negative"),
        ({"windows": [PEAK, {**PEAK, "days": ["sat"], "unit_amount": "0.3"}]},
         "windows[1].unit_amount", None),
        ({"default_unit_amount": None}, "default_unit_amount", "is required"),
        ({"default_unit_amount": 0.08}, "default_unit_amount", None),
        ({"holidays": ["2026-12-25"]}, "holiday_unit_amount", None),
        ({"holiday_unit_amount": "0.01"}, "holidays", None),
        ({"holidays": ["2026-12-25", "25/12/2026"], "holiday_unit_amount": "0"},
         "holidays[1]", None),
        ({"holidays": ["2026-02-30"], "holiday_unit_amount": "0"}, "holidays[0]", None),
        ({"holidays": "2026-12-25", "holiday_unit_amount": "0"}, "holidays", None),
        ({"holidays": ["2026-12-25"], "holiday_unit_amount": -1}, "holiday_unit_amount",
         "must not be negative"),
        ({"timezone": "Mars/Olympus"}, "timezone", None),
        ({"timezone": 5}, "timezone", None),
        ({"timezone": ["UTC"]}, "timezone", None),
    ],
)
def test_parse_errors_name_the_field(
    change: dict[str, Any], field: str, problem: str | None
) -> None:
    raw = {"model": "time_of_use", "windows": [PEAK], "default_unit_amount": "0.08", **change}
    with pytest.raises(InvalidField) as info:
        TOU.parse(raw, PATH)
    assert info.value.field == f"{PATH}.{field}"
    if problem is not None:
        assert info.value.problem == problem


def test_parse_rejects_non_mapping() -> None:
    with pytest.raises(InvalidField) as info:
        TOU.parse("peak", PATH)  # type: ignore[arg-type]
    assert info.value.field == PATH


def test_price_errors() -> None:
    p = params(PEAK)
    ctx = PricingContext("USD", "UTC")
    with pytest.raises(ValueError, match="needs a valid time zone"):
        TOU.price(usage([]), p, None)
    with pytest.raises(ValueError, match="needs a valid time zone"):
        TOU.price(usage([]), p, PricingContext("USD", "Nowhere/Land"))
    with pytest.raises(ValueError, match="buckets add up to 1, not 2"):
        TOU.price(Usage(D(2), buckets=((ts("2026-06-01T08:00"), D(1)),)), p, ctx)
    with pytest.raises(ValueError, match="15-minute boundary"):
        TOU.price(usage([(ts("2026-06-01T08:00") + 60, D(1))]), p, ctx)
    with pytest.raises(ValueError):  # TRANSITION: a bare quantity has no buckets
        TOU.price(D(3), p, ctx)
    assert TOU.price(D(0), p, ctx) == Priced(D(0), None)



@pytest.mark.parametrize(
    ("start", "value", "problem"),
    [
        (float(ts("2026-06-01T08:00")), D(1), "bucket start 1780300800.0 is not on a 15-minute boundary"),
        (D(ts("2026-06-01T08:00")), D(1), "is not on a 15-minute boundary"),
        (True, D(1), "bucket start True is not on a 15-minute boundary"),
        (ts("2026-06-01T08:00"), D(-1), "bucket 1780300800 usage must be finite and >= 0, not -1"),
        (ts("2026-06-01T08:00"), D("NaN"), "must be finite and >= 0, not NaN"),
        (ts("2026-06-01T08:00"), D("sNaN"), "must be finite and >= 0, not sNaN"),
        (ts("2026-06-01T08:00"), D("Infinity"), "must be finite and >= 0, not Infinity"),
    ],
)
def test_a_bad_bucket_is_named_even_among_good_ones(start: object, value: Decimal, problem: str) -> None:
    """The fast loop hands anything unusual to the checked one, which names the bad bucket."""
    good = [(ts("2026-06-01T07:45"), D(2)), (ts("2026-06-01T09:00"), D(3))]
    buckets = ((good[0], (start, value), good[1]))
    quantity = D(5) + value if value.is_finite() else D(6)  # the buckets' own total where there is one
    with pytest.raises(ValueError, match=re.escape(problem)):
        TOU.price(Usage(quantity, 3, buckets=buckets), params(PEAK), PricingContext("USD", "UTC"))  # type: ignore[arg-type]


def test_negative_zero_buckets_and_unsorted_buckets_price_as_sorted_ones() -> None:
    ctx = PricingContext("USD", "Europe/Berlin")
    p = params(PEAK)
    buckets = [(ts("2026-06-01T07:45"), D("1.5")), (ts("2026-06-01T08:00"), D("-0")),
               (ts("2026-06-02T12:00"), D("2.25")), (ts("2026-06-06T12:00"), D(3))]
    expected = TOU.price(usage([(t, abs(v)) for t, v in buckets]), p, ctx)
    # 8:00 UTC is 10:00 in Berlin (peak): 1.5 + 2.25 = 3.75 x 0.20 = 0.75; Saturday 3 x 0.08 = 0.24
    assert expected.amount == D("0.99") and units(expected) == {"peak": D("3.75"), "other times": D("3")}
    assert TOU.price(usage(buckets), p, ctx) == expected
    shuffled = tuple(reversed(buckets))
    assert TOU.price(Usage(D("6.75"), 4, buckets=shuffled), p, ctx) == expected


@pytest.mark.parametrize("budget", [4096, 20])  # 20 zone-days: the memos are cleared again and again
def test_periods_years_apart_on_one_plan_price_like_a_fresh_plan(budget: int, monkeypatch: Any) -> None:
    """The rate memo per zone grows to cover the days asked for and starts again past ~400 days."""
    monkeypatch.setattr(time_of_use, "_MAX_ZONE_DAYS", budget)
    p = params(PEAK, window("weekend", ["sat", "sun"], "00:00", "24:00", "0.05"),
               holidays=["2026-12-25", "2031-12-25"], holiday_unit_amount="0.01")
    for zone, day in [(z, d) for d in ("2026-12-21", "2027-03-08", "2031-12-22", "2026-12-24", "2020-02-28",
                                       "2026-12-25") for z in ("America/New_York", "Asia/Kathmandu")]:
        ctx = PricingContext("USD", zone)
        first = ts(f"{day}T00:00")
        u = usage([(first + k * 900, D(k % 7)) for k in range(0, 14 * 96, 5)])  # two weeks, every 5th bucket
        fresh = params(PEAK, window("weekend", ["sat", "sun"], "00:00", "24:00", "0.05"),
                       holidays=["2026-12-25", "2031-12-25"], holiday_unit_amount="0.01")
        assert TOU.price(u, p, ctx) == TOU.price(u, fresh, ctx)
        assert TOU.price(u, p, ctx).amount == sum((v * reference_rate(p, t, zone) for t, v in u.buckets), D(0))
    wide = usage([(ts("2026-01-01T12:00"), D(1)), (ts("2027-12-31T12:00"), D(2))])  # 729 days apart
    assert units(TOU.price(wide, p, PricingContext("USD", "America/New_York"))) == {"other times": D(3)}

# --- properties ---------------------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "UTC"]
# Late 2026 in quarter hours: both autumn transitions (and Lord Howe's half-hour one).
START = ts("2026-09-25T00:00")
SPAN = 75 * 24 * 4

TIMES = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 15, 30, 45)]


@st.composite
def windows(draw: st.DrawFn) -> list[dict[str, Any]]:
    result = []
    for i in range(draw(st.integers(1, 4))):
        days = draw(st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                             min_size=1, max_size=7, unique=True))
        a, b = sorted(draw(st.lists(st.sampled_from([*TIMES, "24:00"]), min_size=2, max_size=2,
                                    unique=True)))
        unit = str(draw(st.decimals(0, 10, places=2)))
        result.append(window(f"w{i}", days, a, b, unit))
    return result


buckets_strategy = st.dictionaries(
    st.integers(0, SPAN).map(lambda k: START + 900 * k),
    st.decimals(0, 1000, places=3),
    max_size=60,
)


def reference_rate(p: TimeOfUseParams, start: int, zone: str) -> Decimal:
    """The rule, written again without the precomputed table: UTC -> local wall clock."""
    local = datetime.fromtimestamp(start, UTC).astimezone(ZoneInfo(zone))
    if local.date() in p.holidays:
        return p.holiday_unit_amount  # type: ignore[return-value]
    minute = local.hour * 60 + local.minute
    for w in p.windows:
        if local.weekday() in w.days and w.start <= minute < w.end:
            return w.unit_amount
    return p.default_unit_amount


@settings(max_examples=150)
@given(windows(), st.sampled_from(ZONES), buckets_strategy, st.booleans())
def test_every_bucket_is_priced_by_its_local_time(
    raw_windows: list[dict[str, Any]], zone: str, buckets: dict[int, Decimal], holiday: bool
) -> None:
    extra = {"holidays": ["2026-10-25", "2026-11-01"], "holiday_unit_amount": "0.5"}
    extra = extra if holiday else {}
    p = params(*raw_windows, default="0.07", **extra)
    u = usage(list(buckets.items()))
    priced = TOU.price(u, p, PricingContext("USD", zone))
    expected = sum((v * reference_rate(p, t, zone) for t, v in buckets.items()), D(0))
    assert priced.amount == expected
    assert priced.amount == sum((part.amount for part in priced.parts), D(0))
    assert sum((part.units for part in priced.parts), D(0)) == u.quantity
    for part in priced.parts:
        assert part.unit_amount is not None
        assert part.amount == part.units * part.unit_amount


@settings(max_examples=100)
@given(windows(), st.sampled_from(ZONES), buckets_strategy, st.decimals(0, 100, places=2))
def test_more_usage_never_costs_less_and_no_usage_costs_nothing(
    raw_windows: list[dict[str, Any]], zone: str, buckets: dict[int, Decimal], extra: Decimal
) -> None:
    p = params(*raw_windows)
    ctx = PricingContext("USD", zone)
    before = TOU.price(usage(list(buckets.items())), p, ctx).amount
    for t in list(buckets)[:5]:
        more = TOU.price(usage(list({**buckets, t: buckets[t] + extra}.items())), p, ctx)
        assert more.amount >= before
    zero = usage([(t, D(0)) for t in buckets])
    assert TOU.price(zero, p, ctx) == Priced(D(0), None)
