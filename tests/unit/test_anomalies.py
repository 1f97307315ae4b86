"""The anomaly detector on hand-made hourly series with daily and weekly seasonality."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from meterbill.domain.anomalies import DAY, HOUR, WEEK, Anomaly, baseline, detect

MONDAY = int(datetime(2026, 10, 5, tzinfo=timezone.utc).timestamp())


def office(weeks: int, weekend: int = 10) -> dict[int, Decimal]:
    """Hourly counts: 100 in working hours (8-18 UTC) on weekdays, 20 at night; ``weekend`` all
    day Saturday and Sunday. The same every week, with a small deterministic wobble."""
    out = {}
    for h in range(weeks * 168):
        day, hour = h // 24 % 7, h % 24
        value = weekend if day >= 5 else 100 if 8 <= hour < 18 else 20
        out[MONDAY + h * HOUR] = Decimal(value + (h * 7) % 5)
    return out


def test_a_spike_is_found_with_its_expected_range() -> None:
    series = office(5)
    at = MONDAY + 4 * WEEK + 2 * DAY + 11 * HOUR     # Wednesday 11:00 of the fifth week
    series[at] = Decimal(900)
    found = detect(series, MONDAY, MONDAY + 4 * WEEK, MONDAY + 5 * WEEK, "acme", "api_calls")
    assert len(found) == 1
    (a,) = found
    assert (a.kind, a.start_s, a.end_s, a.customer, a.meter) == ("spike", at, at + HOUR, "acme", "api_calls")
    assert a.observed == 900
    assert a.expected_low < a.expected < a.expected_high < 900
    assert 95 <= a.expected <= 105 and a.seasonality == "weekly"
    assert a.score > Decimal("4.5")


def test_the_weekly_pattern_is_not_flagged() -> None:
    """Quiet weekends and nights are normal: a weekly baseline expects them."""
    series = office(6)
    assert detect(series, MONDAY, MONDAY + 4 * WEEK, MONDAY + 6 * WEEK, "acme", "api_calls") == []


def test_a_short_history_falls_back_to_the_hour_of_the_day() -> None:
    series = office(1)
    b = baseline(series, MONDAY + 4 * DAY + 12 * HOUR, MONDAY)   # Friday noon: 4 weekdays of history
    assert b is not None and b.seasonality == "daily" and 95 <= b.median <= 105
    assert baseline(series, MONDAY + 2 * DAY, MONDAY) is None    # two days: no baseline at all


def test_a_meter_that_went_silent_is_found() -> None:
    series = office(5)
    stop = MONDAY + 4 * WEEK + 1 * DAY + 9 * HOUR   # Tuesday 09:00
    for h in range(5):
        series.pop(stop + h * HOUR)
    found = detect(series, MONDAY, MONDAY + 4 * WEEK, MONDAY + 5 * WEEK, "acme", "api_calls")
    assert [(a.kind, a.start_s, a.end_s, a.observed) for a in found] == [("silent", stop, stop + 5 * HOUR, 0)]
    assert found[0].expected > 400


def test_a_drop_is_found() -> None:
    series = office(5)
    at = MONDAY + 4 * WEEK + 3 * DAY + 14 * HOUR
    series[at] = series[at + HOUR] = Decimal(12)
    (a,) = detect(series, MONDAY, MONDAY + 4 * WEEK, MONDAY + 5 * WEEK, "acme", "api_calls")
    assert (a.kind, a.start_s, a.end_s, a.observed) == ("drop", at, at + 2 * HOUR, 24)


def test_quiet_night_hours_of_a_small_meter_are_no_silence() -> None:
    series = {MONDAY + h * HOUR: Decimal(3) for h in range(5 * 168)}
    night = MONDAY + 4 * WEEK + 2 * HOUR
    series.pop(night)
    series.pop(night + HOUR)
    assert detect(series, MONDAY, MONDAY + 4 * WEEK, MONDAY + 5 * WEEK, "acme", "api_calls") == []


def test_any_scan_that_meets_an_anomaly_finds_it_with_the_same_window() -> None:
    series = office(5)
    stop = MONDAY + 4 * WEEK + 1 * DAY + 9 * HOUR
    for h in range(6):
        series.pop(stop + h * HOUR)
    whole = detect(series, MONDAY, MONDAY + 4 * WEEK, MONDAY + 5 * WEEK, "acme", "m")
    late = detect(series, MONDAY, stop + 4 * HOUR, stop + 6 * HOUR, "acme", "m")   # its last two hours
    assert whole == late and len(whole) == 1 and whole[0].start_s == stop
    early = detect(series, MONDAY, stop + 4 * HOUR, stop + 5 * HOUR, "acme", "m")  # before it ended
    assert [(a.key, a.end_s) for a in early] == [(whole[0].key, stop + 5 * HOUR)]


def test_an_anomaly_continuing_a_stored_one_keeps_its_start() -> None:
    series = office(5)
    stop = MONDAY + 4 * WEEK + 1 * DAY + 9 * HOUR
    for h in range(5):
        series.pop(stop + h * HOUR)
    stored = Anomaly("acme", "m", "silent", stop - 30 * HOUR, stop + 2 * HOUR, Decimal(50), Decimal(0),
                     Decimal(100), Decimal(0), Decimal(5), "weekly")
    (a,) = detect(series, MONDAY, stop, stop + 5 * HOUR, "acme", "m", stored=[stored])
    assert (a.start_s, a.end_s) == (stored.start_s, stop + 5 * HOUR)
    assert a.expected > stored.expected              # the three new hours added
    (same,) = detect(series, MONDAY, stop, stop + 2 * HOUR, "acme", "m", stored=[stored])
    assert same == stored                            # nothing after its end: unchanged


def test_the_same_series_gives_the_same_anomalies() -> None:
    series = office(5)
    series[MONDAY + 4 * WEEK + 30 * HOUR] = Decimal(700)
    runs = [detect(dict(series), MONDAY, MONDAY + 4 * WEEK, MONDAY + 5 * WEEK, "a", "m") for _ in range(2)]
    assert runs[0] == runs[1] and all(isinstance(a.score, Decimal) for a in runs[0])
