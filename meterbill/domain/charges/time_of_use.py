"""``time_of_use``: the unit price depends on the LOCAL time the usage happened.

Plan properties (``holidays`` + ``holiday_unit_amount`` and ``timezone`` optional)::

    {"windows": [{"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"],
                  "from": "08:00", "to": "20:00", "unit_amount": "0.20"}],
     "holidays": ["2026-12-25"], "holiday_unit_amount": "0.05",
     "default_unit_amount": "0.08", "timezone": "Europe/Berlin"}

Each 15-minute bucket of ``usage.buckets`` (which must add up to ``usage.quantity``) is
priced by its START in the charge's ``timezone``, else the customer's: a local date in
``holidays`` -> ``holiday_unit_amount``; else the FIRST window (windows may overlap, the
first wins) holding the local weekday with ``from <= time < to``; else the required
``default_unit_amount``. ``from``/``to`` are ``HH:MM`` on a 15-minute boundary, so no
bucket straddles a window edge (nor at +05:30 / +05:45); ``to`` may be ``24:00``; to wrap
midnight, split a window in two with the same name (they share one unit price).
Daylight saving needs no special case: local time comes from each bucket's UTC instant,
so on a 23-hour day no bucket falls in the skipped hour and on a 25-hour day BOTH
occurrences of the repeated hour fall in its window. Parts: one per window name with
usage, then "holidays", then "other times".
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterbill.domain.charges import Part, Priced, PricingContext, Usage, as_usage
from meterbill.domain.charges import check_keys, optional_amount, required_amount
from meterbill.domain.errors import InvalidField
from meterbill.domain.money import CONTEXT

__all__ = ["TimeOfUse", "TimeOfUseParams", "Window"]

_ZERO = Decimal(0)
_BUCKET = 900
_DAY = 86400
_SLOT_MINUTES = 15
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_KEYS = frozenset({"name", "days", "from", "to", "unit_amount"})
_HHMM = re.compile(r"([0-9]{2}):([0-9]{2})", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    days: tuple[int, ...]  # sorted weekdays, 0 = Monday
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight, <= 1440
    unit_amount: Decimal

    def describe(self) -> str:
        return f"{_describe_days(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True, slots=True)
class TimeOfUseParams:
    windows: tuple[Window, ...]
    default_unit_amount: Decimal
    holidays: frozenset[date] = frozenset()
    holiday_unit_amount: Decimal | None = None
    timezone: str | None = None
    # rate index: window names in first-appearance order, then holidays, then default
    labels: tuple[str, ...] = field(init=False, repr=False, compare=False)
    unit_amounts: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)
    # table[weekday * 96 + minute // 15] -> rate index
    table: tuple[int, ...] = field(init=False, repr=False, compare=False)
    holiday_ordinals: frozenset[int] = field(init=False, repr=False, compare=False)
    # zone -> the rate index of each bucket start over a span of UTC days; filled by pricing and
    # shared by every params object with the same rates (e.g. customers' price overrides)
    zones: dict[str, _Span] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: dict[str, list[Window]] = {}
        for window in self.windows:
            names.setdefault(window.name, []).append(window)
        labels = [f"{n} ({'; '.join(w.describe() for w in ws)})" for n, ws in names.items()]
        amounts = [ws[0].unit_amount for ws in names.values()]
        labels += ["holidays", "other times"]
        amounts += [self.holiday_unit_amount or _ZERO, self.default_unit_amount]
        table = _table(self.windows)
        ordinals = frozenset(d.toordinal() for d in self.holidays)
        object.__setattr__(self, "labels", tuple(labels))
        object.__setattr__(self, "unit_amounts", tuple(amounts))
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "holiday_ordinals", ordinals)
        key = (len(labels), table, ordinals)
        if key not in _SHARED_ZONES and len(_SHARED_ZONES) >= 256:
            _SHARED_ZONES.clear()
        object.__setattr__(self, "zones", _SHARED_ZONES.setdefault(key, {}))


_SHARED_ZONES: dict[tuple[int, tuple[int, ...], frozenset[int]], dict[str, _Span]] = {}


@lru_cache(maxsize=256)
def _table(windows: tuple[Window, ...]) -> tuple[int, ...]:
    """``table[weekday * 96 + minute // 15]`` -> rate index (window names in first-appearance
    order; ``len(names) + 1``, the default, where no window applies)."""
    index = {name: i for i, name in enumerate(dict.fromkeys(w.name for w in windows))}
    default = len(index) + 1
    return tuple(
        next((index[w.name] for w in windows if day in w.days and w.start <= minute < w.end), default)
        for day in range(7)
        for minute in range(0, 1440, _SLOT_MINUTES)
    )


class TimeOfUse:
    name = "time_of_use"
    additive_only = True

    def parse(self, raw: Mapping[str, Any], path: str) -> TimeOfUseParams:
        if not isinstance(raw, Mapping):
            raise InvalidField(path, "must be an object")
        raw_windows = raw.get("windows")
        if not _is_list(raw_windows) or not raw_windows:
            raise InvalidField(f"{path}.windows", "must be a non-empty list of windows")
        windows: list[Window] = []
        for i, raw_window in enumerate(raw_windows):
            windows.append(_parse_window(raw_window, f"{path}.windows[{i}]", windows))
        holidays = _parse_holidays(raw.get("holidays"), f"{path}.holidays")
        holiday_amount = optional_amount(raw, "holiday_unit_amount", path)
        if holidays and holiday_amount is None:
            raise InvalidField(f"{path}.holiday_unit_amount", "is required with holidays")
        if holiday_amount is not None and not holidays:
            raise InvalidField(f"{path}.holidays", "must list holiday_unit_amount's dates")
        default = required_amount(raw, "default_unit_amount", path)
        tz = raw.get("timezone")
        if tz is not None and (not isinstance(tz, str) or _load_zone(tz) is None):
            raise InvalidField(f"{path}.timezone", f"{tz!r} is not an IANA time zone name")
        return TimeOfUseParams(tuple(windows), default, holidays, holiday_amount, tz)

    def price(
        self,
        usage: Usage | Decimal,
        params: TimeOfUseParams,
        ctx: PricingContext | None = None,
    ) -> Priced:
        usage = as_usage(usage)
        tz = params.timezone or (ctx.timezone if ctx is not None else None)
        if not isinstance(tz, str) or _load_zone(tz) is None:
            raise ValueError(f"time_of_use needs a valid time zone, got {tz!r}")
        units = _units(params, tz, usage.buckets)
        if _total(units) != usage.quantity:
            units = _checked_units(params, tz, usage.buckets)  # raises the precise error, if any
            raise ValueError(f"time_of_use buckets add up to {_total(units)}, not {usage.quantity}")
        parts: list[Part] = []
        amount = _ZERO
        for label, unit_amount, n in zip(params.labels, params.unit_amounts, units):
            if n:
                part_amount = CONTEXT.multiply(n, unit_amount)
                parts.append(Part(label, n, unit_amount, part_amount))
                amount = CONTEXT.add(amount, part_amount)
        return Priced(amount, None, (), tuple(parts))


class _Irregular(Exception):
    """A bucket the fast loop leaves to the checked one."""


@dataclass(frozen=True, slots=True)
class _Span:
    first: int  # UTC days since the epoch, inclusive
    last: int
    rate_at: dict[int, int]  # bucket start (epoch s) -> rate index, for every bucket of those days


def _units(params: TimeOfUseParams, tz: str, buckets: tuple[tuple[int, Decimal], ...]) -> list[Decimal]:
    """Usage per rate index, added in bucket order under CONTEXT: one lookup and one add per
    bucket. Anything unexpected (a start that is not an int bucket start of the days from the
    first to the last bucket, a signed value, a failing operation) goes to :func:`_checked_units`,
    which gives the same sums or names the bad bucket; NaN/infinity fail the caller's total check."""
    units = [_ZERO] * len(params.labels)
    if not buckets:
        return units
    try:
        rate_at = _rates(params, tz, buckets[0][0] // _DAY, buckets[-1][0] // _DAY)
        with localcontext(CONTEXT):  # the operators below use CONTEXT
            for start, value in buckets:
                if type(start) is not int or value.is_signed():
                    raise _Irregular
                units[rate_at[start]] += value
    except (_Irregular, LookupError, TypeError, AttributeError, ArithmeticError):
        return _checked_units(params, tz, buckets)
    return units


def _total(units: list[Decimal]) -> Decimal:
    total = _ZERO
    for n in units:
        total = CONTEXT.add(total, n)
    return total


def _checked_units(params: TimeOfUseParams, tz: str, buckets: tuple[tuple[int, Decimal], ...]) -> list[Decimal]:
    """:func:`_units` with every bucket checked (``ValueError`` naming the bad one)."""
    units = [_ZERO] * len(params.labels)
    day = rates = None
    with localcontext(CONTEXT):
        for start, value in buckets:
            if type(start) is not int or start % _BUCKET:
                raise ValueError(f"bucket start {start!r} is not on a 15-minute boundary")
            if not value.is_finite() or value < _ZERO:
                raise ValueError(f"bucket {start} usage must be finite and >= 0, not {value}")
            if start // _DAY != day:
                day = start // _DAY
                rates = _day_rates(params, tz, day)
            units[rates[start % _DAY // _BUCKET]] += value  # type: ignore[index]
    return units


_MAX_SPAN_DAYS = 400  # a yearly period fits
_MAX_ZONE_DAYS = 4096  # in all memos together (~6 KB each); beyond, every memo starts again
_zone_days = [0]


def _rates(params: TimeOfUseParams, tz: str, first: int, last: int) -> dict[int, int]:
    """The rate index of every bucket start of UTC days ``first..last`` in zone ``tz``, memoised
    per zone in ``params.zones`` and grown to cover the days asked for (the customers of a billing
    run share their periods' days). ``LookupError`` for a span over ``_MAX_SPAN_DAYS``."""
    span = params.zones.get(tz)
    if span is not None and span.first <= first and last <= span.last:
        return span.rate_at
    if not first <= last <= first + _MAX_SPAN_DAYS:
        raise LookupError(f"buckets span days {first}..{last}")
    held = 0 if span is None else span.last - span.first + 1
    if span is not None and min(first, span.first) + _MAX_SPAN_DAYS >= max(last, span.last):
        first, last = min(first, span.first), max(last, span.last)  # grow: entries are only ever added
    else:
        span = None  # start again with a new dict (a reader of the old one is not disturbed)
    if _zone_days[0] - held + last - first + 1 > _MAX_ZONE_DAYS:
        for zones in _SHARED_ZONES.values():
            zones.clear()
        _zone_days[0] = held = 0
    rate_at = {} if span is None else span.rate_at
    for day in range(first, last + 1):
        if span is None or not span.first <= day <= span.last:
            rate_at.update(zip(range(day * _DAY, (day + 1) * _DAY, _BUCKET), _day_rates(params, tz, day)))
    _zone_days[0] += last - first + 1 - held
    params.zones[tz] = _Span(first, last, rate_at)
    return rate_at


def _day_rates(params: TimeOfUseParams, tz: str, day: int) -> list[int]:
    """The rate index of each 15-minute bucket of UTC day ``day`` in zone ``tz`` under
    ``params`` (holidays folded in)."""
    holiday = len(params.labels) - 2
    table, holidays = params.table, params.holiday_ordinals
    return [holiday if code >> 10 in holidays else table[code & 1023] for code in _local_quarters(tz, day)]


@lru_cache(maxsize=4096)
def _local_quarters(tz: str, day: int) -> array[int]:
    """The local time of each 15-minute bucket of UTC day ``day`` (days since the epoch)
    in zone ``tz``, as ``local date ordinal << 10 | weekday * 96 + minute of day // 15``.
    Shared by every customer and plan in that zone; about 1 KB per zone-day."""
    zone = _load_zone(tz)
    codes = array("q")
    for k in range(_DAY // _BUCKET):
        local = datetime.fromtimestamp(day * _DAY + k * _BUCKET, zone)
        minute = local.hour * 60 + local.minute
        codes.append(local.toordinal() << 10 | local.weekday() * 96 + minute // _SLOT_MINUTES)
    return codes


@lru_cache(maxsize=256)
def _load_zone(tz: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(tz) if tz else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _parse_window(raw: object, path: str, earlier: list[Window]) -> Window:
    row = check_keys(raw, _WINDOW_KEYS, path, "time_of_use window")
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidField(f"{path}.name", "is required: a non-empty name such as 'peak'")
    days = row.get("days")
    if not _is_list(days) or not days:
        raise InvalidField(f"{path}.days", f"must be a non-empty list of: {', '.join(_DAYS)}")
    weekdays: list[int] = []
    for j, day in enumerate(days):
        if day not in _DAYS:
            raise InvalidField(f"{path}.days[{j}]", f"must be one of: {', '.join(_DAYS)}")
        if _DAYS.index(day) in weekdays:
            raise InvalidField(f"{path}.days[{j}]", f"repeats {day!r}")
        weekdays.append(_DAYS.index(day))
    start = _parse_time(row.get("from"), f"{path}.from", allow_24=False)
    end = _parse_time(row.get("to"), f"{path}.to", allow_24=True)
    if end <= start:
        problem = f"must be later than from ({_hhmm(start)}); to wrap midnight, split the window"
        raise InvalidField(f"{path}.to", problem + " in two with the same name")
    unit_amount = required_amount(row, "unit_amount", path)
    for other in earlier:
        if other.name == name and other.unit_amount != unit_amount:
            problem = f"must equal the other {name!r} window's unit_amount ({other.unit_amount})"
            raise InvalidField(f"{path}.unit_amount", problem)
    return Window(name, tuple(sorted(weekdays)), start, end, unit_amount)


def _parse_time(raw: object, path: str, *, allow_24: bool) -> int:
    match = _HHMM.fullmatch(raw) if isinstance(raw, str) else None
    hours, minutes = (int(match[1]), int(match[2])) if match else (99, 99)
    if hours > 24 or minutes > 59 or (hours == 24 and (minutes or not allow_24)):
        last = "24:00" if allow_24 else "23:45"
        raise InvalidField(path, f'must be a local time "HH:MM" from 00:00 to {last}')
    if minutes % _SLOT_MINUTES:
        problem = "must be on a 15-minute boundary (:00, :15, :30 or :45), the usage bucket width"
        raise InvalidField(path, problem)
    return hours * 60 + minutes


def _parse_holidays(raw: object, path: str) -> frozenset[date]:
    if raw is None:
        return frozenset()
    if not _is_list(raw):
        raise InvalidField(path, 'must be a list of local dates "YYYY-MM-DD"')
    days: set[date] = set()
    for i, text in enumerate(raw):
        try:
            days.add(date.fromisoformat(text if _ISO_DATE.fullmatch(str(text)) else ""))
        except ValueError:
            raise InvalidField(f"{path}[{i}]", 'must be a local date "YYYY-MM-DD"') from None
    return frozenset(days)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe_days(days: tuple[int, ...]) -> str:
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [d.capitalize() for d in _DAYS]
    return ", ".join(
        f"{names[r[0]]}-{names[r[-1]]}" if len(r) > 2 else ", ".join(names[d] for d in r)
        for r in runs
    )
