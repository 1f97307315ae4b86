"""Billing periods: calendar arithmetic in the customer's wall-clock time zone.

Period ``k`` of a subscription is ``[boundary(k), boundary(k + 1))``. Boundary ``k`` is
the anchor's *local* wall-clock time in ``tz`` advanced by ``k`` intervals, converted
to UTC (``hour`` is the exception: ``anchor + k`` hours of absolute time).

* ``day``/``week`` add days to the local date and keep the local time of day, so a day
  spanning a DST change lasts 23 or 25 hours.
* ``month``/``quarter``/``year`` add 1/3/12 months *to the anchor* (never to the
  previous boundary) and clamp the day to the month's length:
  Jan 31 -> Feb 28/29 -> Mar 31 -> Apr 30.
* Wall-clock times are resolved with PEP 495 ``fold=0``, which is also RFC 5545's rule:
  a time inside a spring-forward gap is read with the offset in force before the gap,
  i.e. shifted forward by the gap's length (02:30 in a 02:00-03:00 gap -> 03:30 after
  it); an ambiguous fall-back time takes its first occurrence.

Every datetime accepted must be timezone-aware; every datetime returned is in UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterbill.domain.errors import InvalidField

__all__ = [
    "INTERVALS",
    "Period",
    "billing_period",
    "boundary",
    "closed_periods",
    "full_period",
    "period_containing",
]

INTERVALS = ("hour", "day", "week", "month", "quarter", "year")

UTC = timezone.utc  # noqa: UP017
_HOUR = timedelta(hours=1)
_DAYS = {"day": 1, "week": 7}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC; ``index`` is the boundary index ``k`` of ``start``."""

    start: datetime
    end: datetime
    index: int

    @property
    def key(self) -> str:
        """Stable id fragment: the start instant as ``%Y%m%dT%H%M%SZ``."""
        return self.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@lru_cache(maxsize=256)
def _load_zone(tz: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone(tz: str) -> ZoneInfo:
    zone = _load_zone(tz) if isinstance(tz, str) and tz else None
    if zone is None:
        raise InvalidField(
            "timezone", f"{tz!r} is not an IANA time zone name such as 'Europe/Berlin'"
        )
    return zone


def _check_interval(interval: str) -> None:
    if interval not in INTERVALS:
        raise InvalidField(
            "interval",
            f"unknown interval {interval!r}; expected one of: {', '.join(INTERVALS)}",
        )


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _add_months(local: datetime, months: int) -> datetime:
    year, month0 = divmod(local.year * 12 + (local.month - 1) + months, 12)
    day = min(local.day, calendar.monthrange(year, month0 + 1)[1])
    return local.replace(year=year, month=month0 + 1, day=day)


def _wall_clock(anchor: datetime, zone: ZoneInfo) -> datetime:
    """The anchor's naive local wall-clock time in ``zone``."""
    return anchor.astimezone(zone).replace(tzinfo=None, fold=0)


def _boundary(anchor: datetime, interval: str, zone: ZoneInfo, k: int) -> datetime:
    if interval == "hour":
        return anchor.astimezone(UTC) + k * _HOUR
    local = _wall_clock(anchor, zone)
    if interval in _DAYS:
        local = local + timedelta(days=k * _DAYS[interval])
    else:
        local = _add_months(local, k * _MONTHS[interval])
    # fold=0: in a gap -> offset before it (shift forward); ambiguous -> first one.
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


@lru_cache(maxsize=65536)  # pure and hot: every customer-period asks for its two boundaries
def boundary(anchor: datetime, interval: str, tz: str, k: int) -> datetime:
    """The UTC instant of boundary ``k`` (``k`` may be negative: before the anchor)."""
    _check_interval(interval)
    return _boundary(_aware(anchor, "anchor"), interval, _zone(tz), k)


def _estimate(
    anchor: datetime, interval: str, zone: ZoneInfo, instant: datetime
) -> int:
    """A guess for the index of the period containing ``instant``, off by at most ~1."""
    if interval == "hour":
        return (instant - anchor) // _HOUR
    local_anchor = _wall_clock(anchor, zone)
    local_instant = _wall_clock(instant, zone)
    if interval in _DAYS:
        return (local_instant - local_anchor).days // _DAYS[interval]
    months = (local_instant.year - local_anchor.year) * 12 + (
        local_instant.month - local_anchor.month
    )
    return months // _MONTHS[interval]


def _containing(
    anchor: datetime, interval: str, zone: ZoneInfo, instant: datetime
) -> Period:
    k = _estimate(anchor, interval, zone, instant)
    start = _boundary(anchor, interval, zone, k)
    while start > instant:
        k -= 1
        start = _boundary(anchor, interval, zone, k)
    end = _boundary(anchor, interval, zone, k + 1)
    while end <= instant:
        k, start = k + 1, end
        end = _boundary(anchor, interval, zone, k + 1)
    return Period(start, end, k)


def period_containing(
    anchor: datetime, interval: str, tz: str, instant: datetime
) -> Period:
    """The whole period ``k`` with ``boundary(k) <= instant < boundary(k + 1)``."""
    _check_interval(interval)
    zone = _zone(tz)
    return _containing(
        _aware(anchor, "anchor"), interval, zone, _aware(instant, "instant")
    )


def billing_period(
    anchor: datetime, interval: str, tz: str, started_at: datetime, instant: datetime
) -> Period:
    """The period of a subscription started at ``started_at`` that holds ``instant`` (an instant
    before ``started_at`` counts as ``started_at``), exactly as :func:`closed_periods` yields it:
    the first period starts at ``started_at``. Its start is the key of its invoice."""
    started_at = _aware(started_at, "started_at").astimezone(UTC)
    p = period_containing(anchor, interval, tz, max(_aware(instant, "instant"), started_at))
    return Period(max(p.start, started_at), p.end, p.index)


def closed_periods(
    anchor: datetime,
    interval: str,
    tz: str,
    started_at: datetime,
    after: datetime | None,
    until: datetime,
) -> list[Period]:
    """Periods of a subscription started at ``started_at``, closed by ``until``.

    In order; each ends at or before ``until`` and strictly after ``after`` (``None``:
    from the beginning). The first period is the one containing ``started_at`` with its
    start clipped to ``started_at``; later periods are whole. Empty periods (possible
    only where a zone skipped a whole calendar day) are left out.
    """
    _check_interval(interval)
    zone = _zone(tz)
    anchor = _aware(anchor, "anchor")
    started_at = _aware(started_at, "started_at").astimezone(UTC)
    until = _aware(until, "until")
    first = _containing(anchor, interval, zone, started_at)
    k, start, end = first.index, started_at, first.end
    if after is not None:
        later = _containing(anchor, interval, zone, _aware(after, "after"))
        if later.index > k:  # periods ending at or before `after` are skipped whole
            k, start, end = later.index, later.start, later.end
    periods: list[Period] = []
    while end <= until:
        if start < end:
            periods.append(Period(start, end, k))
        k, start = k + 1, end
        end = _boundary(anchor, interval, zone, k + 1)
    return periods


def full_period(anchor: datetime, interval: str, tz: str, p: Period) -> Period:
    """The unclipped period with the same index as ``p`` (the proration denominator)."""
    _check_interval(interval)
    zone = _zone(tz)
    anchor = _aware(anchor, "anchor")
    return Period(
        _boundary(anchor, interval, zone, p.index),
        _boundary(anchor, interval, zone, p.index + 1),
        p.index,
    )
