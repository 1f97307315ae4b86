"""Which period bills which 15-minute usage bucket: one rule for the readers of a period's usage
(``meters.bucket_range``) and for the late-usage marker (``meters.billed_from`` +
``periods.billing_period``), also when the subscription starts off the bucket grid."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from meterbill.domain.meters import BUCKET_SECONDS, billed_from, bucket_range
from meterbill.domain.periods import billing_period, closed_periods

UTC = timezone.utc
T0 = datetime(2026, 10, 10, 10, 7, tzinfo=UTC)  # 10:07, inside the 10:00-10:15 bucket


def test_the_bucket_holding_an_off_grid_start_belongs_to_the_first_period() -> None:
    first_end = datetime(2026, 11, 10, 10, 7, tzinfo=UTC)
    lo, hi = bucket_range(T0, first_end, T0)
    assert lo == int(datetime(2026, 10, 10, 10, 0, tzinfo=UTC).timestamp())
    assert hi == int(first_end.timestamp())  # the 10:00 bucket of 11-10 starts before the end: included
    later_lo, _ = bucket_range(first_end, first_end + timedelta(days=30), T0)
    assert later_lo == int(first_end.timestamp())  # ... and so not in the next period
    assert billed_from(lo, T0) == T0
    assert billed_from(lo - BUCKET_SECONDS, T0) is None  # ends before the subscription starts
    assert billed_from(lo + BUCKET_SECONDS, T0) == datetime(2026, 10, 10, 10, 15, tzinfo=UTC)


def test_a_shortened_first_period_is_keyed_by_its_start() -> None:
    anchor = datetime(2026, 10, 1, tzinfo=UTC)
    started = datetime(2026, 10, 10, tzinfo=UTC)
    assert billing_period(anchor, "month", "UTC", started, datetime(2026, 10, 20, tzinfo=UTC)).start == started
    assert billing_period(anchor, "month", "UTC", started, datetime(2026, 11, 20, tzinfo=UTC)).start == \
        datetime(2026, 11, 1, tzinfo=UTC)


@given(anchor_s=st.integers(0, 7 * 86400), start_s=st.integers(0, 7 * 86400),
       interval=st.sampled_from(["hour", "day"]), tz=st.sampled_from(["UTC", "Asia/Kolkata", "America/St_Johns"]))
def test_every_bucket_is_billed_by_exactly_one_period_and_marked_under_it(anchor_s: int, start_s: int,
                                                                          interval: str, tz: str) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    anchor, started = base + timedelta(seconds=anchor_s), base + timedelta(seconds=start_s)
    until = started + timedelta(days=3)
    periods = closed_periods(anchor, interval, tz, started, None, until)
    first_bucket = int(started.timestamp()) // BUCKET_SECONDS * BUCKET_SECONDS
    for b in range(first_bucket, int(periods[-1].end.timestamp()) - BUCKET_SECONDS, BUCKET_SECONDS):
        owners = [p for p in periods if bucket_range(p.start, p.end, started)[0] <= b
                  < bucket_range(p.start, p.end, started)[1]]
        assert len(owners) == 1, (b, owners)
        at = billed_from(b, started)
        assert at is not None
        assert billing_period(anchor, interval, tz, started, at).start == owners[0].start
