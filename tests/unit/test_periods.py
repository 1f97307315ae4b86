"""meterbill.domain.periods: wall-clock periods across DST, month ends, offsets."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.domain import periods
from meterbill.domain.errors import InvalidField
from meterbill.domain.periods import (
    INTERVALS,
    Period,
    boundary,
    closed_periods,
    full_period,
    period_containing,
)

UTC = timezone.utc  # noqa: UP017
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
KATHMANDU = ZoneInfo("Asia/Kathmandu")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def hours(p: Period) -> float:
    return (p.end - p.start) / timedelta(hours=1)


# --- month arithmetic ---------------------------------------------------------


def test_month_end_anchor_clamps_each_month_from_the_anchor_through_a_leap_year() -> (
    None
):
    anchor = utc(2023, 1, 31, 10, 0)
    got = [boundary(anchor, "month", "UTC", k).date().isoformat() for k in range(15)]
    assert got == [
        "2023-01-31",
        "2023-02-28",
        "2023-03-31",
        "2023-04-30",
        "2023-05-31",
        "2023-06-30",
        "2023-07-31",
        "2023-08-31",
        "2023-09-30",
        "2023-10-31",
        "2023-11-30",
        "2023-12-31",
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
    ]
    assert all(boundary(anchor, "month", "UTC", k).hour == 10 for k in range(15))


def test_quarter_and_year_add_months_to_the_anchor_not_cumulatively() -> None:
    anchor = utc(2023, 11, 30)
    quarters = [
        boundary(anchor, "quarter", "UTC", k).date().isoformat() for k in range(-1, 4)
    ]
    assert quarters == [
        "2023-08-30",
        "2023-11-30",
        "2024-02-29",
        "2024-05-30",
        "2024-08-30",
    ]
    leap = utc(2024, 2, 29, 12)
    years = [boundary(leap, "year", "UTC", k).date().isoformat() for k in range(-1, 5)]
    assert years == [
        "2023-02-28",
        "2024-02-29",
        "2025-02-28",
        "2026-02-28",
        "2027-02-28",
        "2028-02-29",
    ]


def test_negative_k_and_instants_before_the_anchor() -> None:
    anchor = utc(2024, 1, 31, 10)
    assert boundary(anchor, "month", "UTC", -1) == utc(2023, 12, 31, 10)
    assert boundary(anchor, "month", "UTC", -2) == utc(2023, 11, 30, 10)
    assert boundary(anchor, "month", "UTC", -13) == utc(2022, 12, 31, 10)
    p = period_containing(anchor, "month", "UTC", utc(2023, 12, 15))
    assert (p.start, p.end, p.index) == (
        utc(2023, 11, 30, 10),
        utc(2023, 12, 31, 10),
        -2,
    )
    p = period_containing(anchor, "day", "UTC", utc(2024, 1, 31, 9, 59))
    assert (p.start, p.index) == (utc(2024, 1, 30, 10), -1)
    p = period_containing(anchor, "hour", "UTC", utc(2024, 1, 31, 7, 30))
    assert (p.start, p.end, p.index) == (utc(2024, 1, 31, 7), utc(2024, 1, 31, 8), -3)


def test_boundaries_are_inclusive_at_the_start() -> None:
    anchor = utc(2024, 1, 31, 10)
    p = period_containing(anchor, "month", "UTC", utc(2024, 2, 29, 10))
    assert (p.start, p.index) == (utc(2024, 2, 29, 10), 1)
    assert period_containing(anchor, "month", "UTC", anchor).index == 0


def test_period_containing_is_constant_time_for_distant_instants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    real = periods._boundary

    def counting(*args: object) -> datetime:
        nonlocal calls
        calls += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(periods, "_boundary", counting)
    anchor = datetime(2000, 1, 31, 0, 30, tzinfo=BERLIN)
    p = period_containing(anchor, "month", "Europe/Berlin", utc(2399, 3, 15))
    assert p.index == 399 * 12 + 1
    assert p.start.astimezone(BERLIN).replace(tzinfo=None) == datetime(
        2399, 2, 28, 0, 30
    )
    assert calls <= 4


# --- DST: day periods ---------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "tz", "day", "expected_hours"),
    [
        (BERLIN, "Europe/Berlin", datetime(2024, 3, 31, 12), 23),  # CET -> CEST
        (BERLIN, "Europe/Berlin", datetime(2024, 10, 27, 12), 25),  # CEST -> CET
        (BERLIN, "Europe/Berlin", datetime(2024, 6, 1, 12), 24),
        (NEW_YORK, "America/New_York", datetime(2024, 3, 10, 12), 23),  # EST -> EDT
        (NEW_YORK, "America/New_York", datetime(2024, 11, 3, 12), 25),  # EDT -> EST
    ],
)
def test_day_periods_keep_local_midnight_across_dst(
    zone: ZoneInfo, tz: str, day: datetime, expected_hours: int
) -> None:
    anchor = datetime(2024, 1, 1, tzinfo=zone)
    p = period_containing(anchor, "day", tz, day.replace(tzinfo=zone))
    assert hours(p) == expected_hours
    assert p.start.tzinfo == UTC and p.end.tzinfo == UTC
    assert p.start.astimezone(zone).replace(tzinfo=None) == day.replace(hour=0)
    assert p.end.astimezone(zone).replace(tzinfo=None) == day.replace(
        hour=0
    ) + timedelta(days=1)


def test_day_period_exact_utc_instants_in_berlin() -> None:
    anchor = datetime(2024, 1, 1, tzinfo=BERLIN)
    spring = period_containing(anchor, "day", "Europe/Berlin", utc(2024, 3, 31, 12))
    assert (spring.start, spring.end) == (utc(2024, 3, 30, 23), utc(2024, 3, 31, 22))
    autumn = period_containing(anchor, "day", "Europe/Berlin", utc(2024, 10, 27, 12))
    assert (autumn.start, autumn.end) == (utc(2024, 10, 26, 22), utc(2024, 10, 27, 23))


def test_week_periods_across_dst() -> None:
    anchor = datetime(2024, 3, 4, 9, 0, tzinfo=NEW_YORK)  # a Monday, 09:00 EST
    p = period_containing(anchor, "week", "America/New_York", utc(2024, 3, 10, 12))
    assert (p.start, p.end, p.index) == (utc(2024, 3, 4, 14), utc(2024, 3, 11, 13), 0)
    assert hours(p) == 7 * 24 - 1
    nxt = period_containing(anchor, "week", "America/New_York", utc(2024, 3, 12))
    assert (nxt.start, nxt.index) == (utc(2024, 3, 11, 13), 1)
    assert hours(nxt) == 7 * 24


# --- DST: month periods whose boundary falls in a gap or an overlap -----------


def test_month_boundary_in_the_berlin_spring_forward_gap_shifts_forward() -> None:
    anchor = datetime(2024, 1, 31, 2, 30, tzinfo=BERLIN)
    # Mar 31 02:30 does not exist in Berlin (02:00 -> 03:00): it becomes 03:30 CEST.
    b = boundary(anchor, "month", "Europe/Berlin", 2)
    assert b == utc(2024, 3, 31, 1, 30)
    assert b.astimezone(BERLIN).replace(tzinfo=None) == datetime(2024, 3, 31, 3, 30)
    assert boundary(anchor, "month", "Europe/Berlin", 1) == utc(
        2024, 2, 29, 1, 30
    )  # CET
    assert boundary(anchor, "month", "Europe/Berlin", 3) == utc(
        2024, 4, 30, 0, 30
    )  # CEST
    p = period_containing(anchor, "month", "Europe/Berlin", utc(2024, 3, 31, 1, 0))
    assert (p.start, p.end, p.index) == (
        utc(2024, 2, 29, 1, 30),
        utc(2024, 3, 31, 1, 30),
        1,
    )


def test_month_boundary_in_the_new_york_spring_forward_gap() -> None:
    anchor = datetime(2024, 1, 10, 2, 30, tzinfo=NEW_YORK)
    assert boundary(anchor, "month", "America/New_York", 1) == utc(
        2024, 2, 10, 7, 30
    )  # EST
    assert boundary(anchor, "month", "America/New_York", 2) == utc(
        2024, 3, 10, 7, 30
    )  # 03:30 EDT
    assert boundary(anchor, "month", "America/New_York", 3) == utc(
        2024, 4, 10, 6, 30
    )  # EDT


def test_ambiguous_fall_back_boundary_takes_the_first_occurrence() -> None:
    anchor = datetime(2024, 9, 3, 1, 30, tzinfo=NEW_YORK)
    # Nov 3 01:30 happens twice in New York; the first is 01:30 EDT = 05:30 UTC.
    assert boundary(anchor, "month", "America/New_York", 2) == utc(2024, 11, 3, 5, 30)
    anchor = datetime(2024, 8, 27, 2, 30, tzinfo=BERLIN)
    assert boundary(anchor, "month", "Europe/Berlin", 2) == utc(
        2024, 10, 27, 0, 30
    )  # CEST


# --- fractional offsets -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "tz", "expected"),
    [
        (
            KOLKATA,
            "Asia/Kolkata",
            [
                utc(2023, 12, 31, 18, 30),
                utc(2024, 1, 31, 18, 30),
                utc(2024, 2, 29, 18, 30),
            ],
        ),
        (
            KATHMANDU,
            "Asia/Kathmandu",
            [
                utc(2023, 12, 31, 18, 15),
                utc(2024, 1, 31, 18, 15),
                utc(2024, 2, 29, 18, 15),
            ],
        ),
    ],
)
def test_local_midnight_boundaries_in_fractional_offset_zones(
    zone: ZoneInfo, tz: str, expected: list[datetime]
) -> None:
    anchor = datetime(2024, 1, 1, tzinfo=zone)
    assert [boundary(anchor, "month", tz, k) for k in range(3)] == expected
    second_day = expected[0] + timedelta(days=1)  # Jan 2, local midnight
    last_moment = period_containing(
        anchor, "day", tz, second_day - timedelta(microseconds=1)
    )
    assert (last_moment.start, last_moment.end, last_moment.index) == (
        expected[0],
        second_day,
        0,
    )
    assert period_containing(anchor, "day", tz, second_day).index == 1


def test_anchor_given_in_another_zone_uses_its_wall_clock_in_tz() -> None:
    anchor = utc(2024, 1, 31, 23, 0)  # = Feb 1 04:30 in Kolkata
    assert boundary(anchor, "month", "Asia/Kolkata", 1) == utc(
        2024, 2, 29, 23, 0
    )  # Mar 1 04:30 IST


# --- hour periods -------------------------------------------------------------


def test_hour_periods_are_absolute_hours_across_dst() -> None:
    anchor = datetime(2024, 3, 31, 0, 0, tzinfo=BERLIN)  # 2024-03-30T23:00Z
    got = [boundary(anchor, "hour", "Europe/Berlin", k) for k in range(5)]
    assert got == [utc(2024, 3, 30, 23) + timedelta(hours=k) for k in range(5)]
    local = [b.astimezone(BERLIN).hour for b in got]
    assert local == [0, 1, 3, 4, 5]  # 02:00 local never happens
    p = period_containing(
        anchor, "hour", "Europe/Berlin", datetime(2024, 3, 31, 3, 30, tzinfo=BERLIN)
    )
    assert (p.start, p.end, p.index) == (utc(2024, 3, 31, 1), utc(2024, 3, 31, 2), 2)
    autumn = datetime(2024, 10, 27, 0, 0, tzinfo=BERLIN)  # 2024-10-26T22:00Z
    # (aware datetime + timedelta is wall-clock arithmetic in Python: go through UTC)
    ps = closed_periods(
        autumn, "hour", "Europe/Berlin", autumn, None, utc(2024, 10, 27, 3)
    )
    assert len(ps) == 5 and all(hours(p) == 1 for p in ps)
    assert [p.start.astimezone(BERLIN).hour for p in ps] == [
        0,
        1,
        2,
        2,
        3,
    ]  # 02:00 twice


def test_hour_anchor_minutes_are_kept() -> None:
    anchor = utc(2024, 1, 1, 0, 15)
    p = period_containing(anchor, "hour", "Asia/Kathmandu", utc(2024, 1, 1, 5, 0))
    assert (p.start, p.index) == (utc(2024, 1, 1, 4, 15), 4)


# --- closed_periods / full_period ---------------------------------------------


def test_closed_periods_with_partial_first_period() -> None:
    anchor = utc(2024, 1, 1)
    started = utc(2024, 1, 20, 15, 30)
    got = closed_periods(anchor, "month", "UTC", started, None, utc(2024, 4, 15))
    assert [(p.start, p.end, p.index) for p in got] == [
        (started, utc(2024, 2, 1), 0),
        (utc(2024, 2, 1), utc(2024, 3, 1), 1),
        (utc(2024, 3, 1), utc(2024, 4, 1), 2),
    ]
    full = full_period(anchor, "month", "UTC", got[0])
    assert (full.start, full.end, full.index) == (utc(2024, 1, 1), utc(2024, 2, 1), 0)
    assert full_period(anchor, "month", "UTC", got[1]) == got[1]


def test_closed_periods_end_exactly_at_until_is_included() -> None:
    anchor = utc(2024, 1, 1)
    got = closed_periods(anchor, "month", "UTC", anchor, None, utc(2024, 3, 1))
    assert [p.end for p in got] == [utc(2024, 2, 1), utc(2024, 3, 1)]
    assert closed_periods(anchor, "month", "UTC", anchor, None, utc(2024, 1, 31)) == []


def test_closed_periods_after_skips_periods_already_billed() -> None:
    anchor = utc(2024, 1, 1)
    started = utc(2024, 1, 20)
    args = (anchor, "month", "UTC", started)
    assert [
        p.index for p in closed_periods(*args, utc(2024, 2, 1), utc(2024, 5, 1))
    ] == [1, 2, 3]
    assert [
        p.index for p in closed_periods(*args, utc(2024, 2, 10), utc(2024, 5, 1))
    ] == [1, 2, 3]
    assert [
        p.index for p in closed_periods(*args, utc(2024, 3, 1), utc(2024, 5, 1))
    ] == [2, 3]
    # `after` inside or before the first (partial) period keeps it, still clipped
    first = closed_periods(*args, utc(2024, 1, 25), utc(2024, 2, 1))
    assert [(p.start, p.index) for p in first] == [(started, 0)]
    assert closed_periods(*args, utc(2023, 1, 1), utc(2024, 2, 1)) == first
    assert closed_periods(*args, utc(2024, 5, 1), utc(2024, 5, 1)) == []


def test_subscription_starting_before_the_anchor() -> None:
    anchor = utc(2024, 1, 15)
    got = closed_periods(
        anchor, "month", "UTC", utc(2023, 12, 1), None, utc(2024, 2, 15)
    )
    assert [(p.start, p.end, p.index) for p in got] == [
        (utc(2023, 12, 1), utc(2023, 12, 15), -2),
        (utc(2023, 12, 15), utc(2024, 1, 15), -1),
        (utc(2024, 1, 15), utc(2024, 2, 15), 0),
    ]


def test_period_key_is_the_utc_start() -> None:
    anchor = datetime(2024, 1, 1, tzinfo=KOLKATA)
    assert (
        period_containing(anchor, "month", "Asia/Kolkata", utc(2024, 1, 10)).key
        == "20231231T183000Z"
    )


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize("interval", ["monthly", "minute", "", "Month", None])
def test_unknown_interval(interval: object) -> None:
    with pytest.raises(InvalidField) as info:
        boundary(utc(2024, 1, 1), interval, "UTC", 0)  # type: ignore[arg-type]
    assert info.value.field == "interval"
    assert "month" in info.value.problem


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", "Europe", None, 5])
def test_unknown_timezone(tz: object) -> None:
    with pytest.raises(InvalidField) as info:
        period_containing(utc(2024, 1, 1), "day", tz, utc(2024, 2, 1))  # type: ignore[arg-type]
    assert info.value.field == "timezone"


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        boundary(datetime(2024, 1, 1), "day", "UTC", 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_containing(utc(2024, 1, 1), "day", "UTC", datetime(2024, 1, 5))
    with pytest.raises(ValueError, match="timezone-aware"):
        closed_periods(
            utc(2024, 1, 1), "day", "UTC", utc(2024, 1, 1), None, datetime(2024, 1, 5)
        )


# --- properties ---------------------------------------------------------------

TZS = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Chatham",
]
ZONES = [ZoneInfo(name) for name in TZS]
# Real instants only: a wall time inside a DST gap is not an instant, and PEP 495 makes such
# (or a repeated fall-back hour) compares unequal to every other zone's datetimes; use UTC.
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2060, 12, 31),
    timezones=st.sampled_from(ZONES),
).map(lambda d: d.astimezone(timezone.utc))


@settings(max_examples=300, deadline=None)
@given(
    anchor=instants,
    instant=instants,
    interval=st.sampled_from(INTERVALS),
    tz=st.sampled_from(TZS),
)
def test_period_containing_contains_and_periods_tile(
    anchor: datetime, instant: datetime, interval: str, tz: str
) -> None:
    p = period_containing(anchor, interval, tz, instant)
    assert p.start <= instant < p.end
    assert p.start == boundary(anchor, interval, tz, p.index)
    assert p.end == boundary(anchor, interval, tz, p.index + 1)
    nxt = period_containing(anchor, interval, tz, p.end)
    assert (nxt.start, nxt.index) == (p.end, p.index + 1)
    prev = period_containing(anchor, interval, tz, p.start - timedelta(microseconds=1))
    assert (prev.end, prev.index) == (p.start, p.index - 1)


@settings(max_examples=150, deadline=None)
@given(
    anchor=instants,
    start=instants,
    span_days=st.integers(0, 800),
    after_days=st.none() | st.integers(-40, 800),
    interval=st.sampled_from(["day", "week", "month", "quarter", "year"]),
    tz=st.sampled_from(TZS),
)
def test_closed_periods_tile_from_the_start(
    anchor: datetime,
    start: datetime,
    span_days: int,
    after_days: int | None,
    interval: str,
    tz: str,
) -> None:
    until = start + timedelta(days=span_days)
    after = None if after_days is None else start + timedelta(days=after_days)
    got = closed_periods(anchor, interval, tz, start, after, until)
    for a, b in itertools.pairwise(got):
        assert a.end == b.start and b.index == a.index + 1
    for p in got:
        assert p.start < p.end <= until
        assert after is None or p.end > after
        assert full_period(anchor, interval, tz, p).end == p.end
    if got and (after is None or after < got[0].start):
        assert got[0].start == start
    everything = closed_periods(anchor, interval, tz, start, None, until)
    assert got == [p for p in everything if after is None or p.end > after]


def test_demo_month_is_derived_from_the_clock_on_any_day() -> None:
    """The demo closes the last month that has ended, whatever today is (no hard-coded month)."""
    from meterbill.local.demo import last_ended_month

    utc = timezone.utc
    assert last_ended_month(datetime(2026, 12, 1, 0, 0, tzinfo=utc)) == (
        datetime(2026, 11, 1, tzinfo=utc), datetime(2026, 12, 1, tzinfo=utc))
    assert last_ended_month(datetime(2027, 1, 31, 23, 59, 59, tzinfo=utc)) == (
        datetime(2026, 12, 1, tzinfo=utc), datetime(2027, 1, 1, tzinfo=utc))
    assert last_ended_month(datetime(2028, 3, 15, 12, tzinfo=utc)) == (
        datetime(2028, 2, 1, tzinfo=utc), datetime(2028, 3, 1, tzinfo=utc))
