"""Instants as text: RFC 3339 in, UTC 'Z' out (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from meterbill.domain.errors import InvalidField

UTC = timezone.utc


def iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond // 1000:03d}"
    return text + "Z"


def parse_instant(value: object, field: str) -> datetime:
    if type(value) is not str:
        raise InvalidField(field, "must be an RFC 3339 timestamp string such as \"2026-10-01T00:00:00Z\"")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidField(field, f"'{value[:40]}' is not an RFC 3339 timestamp") from None
    if dt.tzinfo is None:
        raise InvalidField(field, "must include a UTC offset or 'Z'")
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise InvalidField(field, f"'{value[:40]}' is out of range") from None


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000
