"""Metered events: parse and validate one batch, event by event (pure, no clock).

Accepting is all-or-nothing per event, never per batch: every event either yields an
``Event`` or an ``EventError`` naming its index, id, field and problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.ids import MAX_ID, id_problem, is_id, is_name
from meterbill.domain.json_body import DUPLICATE_PROBLEM, MAX_DEPTH, DuplicateKeys, pairs_hook

MAX_BATCH = 1000
MAX_PROPERTIES = 100
MAX_STRING = 1024
FUTURE_TOLERANCE_MS = 5 * 60 * 1000
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: older timestamps are almost surely unit bugs

EVENT_FIELDS = ("id", "customer", "type", "timestamp", "properties")
CLOUDEVENT_FIELDS = ("specversion", "id", "source", "type", "subject", "time", "data",
                     "datacontenttype", "dataschema")
_EVENT_KEYS, _CLOUD_KEYS = frozenset(EVENT_FIELDS), frozenset(CLOUDEVENT_FIELDS)

Scalar = str | int | Decimal | bool | None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    customer: str
    type: str
    ts_ms: int
    properties: Mapping[str, Scalar]
    digest: str  # content hash: same id + same digest = a harmless retry

    @property
    def timestamp(self) -> datetime:
        from datetime import timezone

        return datetime.fromtimestamp(self.ts_ms / 1000, tz=timezone.utc)


@dataclass(frozen=True, slots=True)
class EventError:
    index: int
    id: str | None
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "field": self.field,
                "code": self.code, "message": self.message}


class _Reject(Exception):
    def __init__(self, field: str, code: str, message: str) -> None:
        self.field, self.code, self.message = field, code, message


def _id(obj: Mapping[str, Any], key: str) -> str:
    """An id (``domain.ids``): event id, customer; the common, valid case costs one set check."""
    value = obj.get(key)
    if is_id(value):
        return value  # type: ignore[no-any-return]
    code, problem = id_problem(value)  # type: ignore[misc]
    raise _Reject(key, code, problem)


def _name(obj: Mapping[str, Any], key: str) -> str:
    """A name (``domain.ids``): event type, CloudEvents source."""
    value = obj.get(key)
    if is_name(value):
        return value  # type: ignore[no-any-return]
    code, problem = id_problem(value, name=True)  # type: ignore[misc]
    raise _Reject(key, code, problem)


def parse_timestamp_ms(value: Any, label: str) -> int:
    if value is None:
        raise _Reject(label, "required", "is required")
    if type(value) is not str:
        raise _Reject(label, "invalid_type",
                      "must be an RFC 3339 string such as \"2026-10-01T12:00:00Z\"")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject(label, "invalid_timestamp",
                      f"'{value[:40]}' is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise _Reject(label, "missing_timezone",
                      "must include a UTC offset or 'Z' (e.g. 2026-10-01T12:00:00Z)")
    return int(parsed.timestamp() * 1000) if parsed.microsecond == 0 else (
        int(parsed.timestamp()) * 1000 + parsed.microsecond // 1000)


# -- numbers ----------------------------------------------------------------------------------
# The one numeric range (docs/decisions.md, 2026-12-01). DynamoDB stores numbers of at most 38
# significant digits with a magnitude from 1E-130 to below 1E+126, and a usage bucket stores the
# *sum* of its events. A value below 10^16 with at most 10 decimal places is a multiple of
# 10^-10 with at most 26 significant digits, so a sum of up to 10^12 of them is a multiple of
# 10^-10 below 10^28: at most 38 digits, always storable. 10^16 keeps every integer a
# JavaScript client holds exactly (2^53); 10 decimal places go finer than nano-units.
NUMBER_INTEGER_DIGITS = 16
NUMBER_DECIMALS = 10
NUMBER_RULE = (f"must be a finite number below 10^{NUMBER_INTEGER_DIGITS} in absolute value with at most "
               f"{NUMBER_DECIMALS} digits after the decimal point")
_INT_LIMIT = 10 ** NUMBER_INTEGER_DIGITS


def number_problem(value: int | Decimal) -> str | None:
    """Why a number (a JSON number, or a numeric string a meter aggregates) is not accepted."""
    if type(value) is int:
        return None if -_INT_LIMIT < value < _INT_LIMIT else NUMBER_RULE
    if not value.is_finite():
        return "must be a finite number"
    if not value:
        return None
    _, digits, exponent = value.as_tuple()
    if exponent + len(digits) > NUMBER_INTEGER_DIGITS:  # type: ignore[operator]
        return NUMBER_RULE
    if exponent < -NUMBER_DECIMALS:  # type: ignore[operator]
        zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if exponent + zeros < -NUMBER_DECIMALS:  # type: ignore[operator]
            return NUMBER_RULE
    return None


def _valid_text(text: str) -> bool:
    """Unicode that UTF-8 can carry (DynamoDB stores UTF-8): no unpaired surrogates."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _properties(value: Any, label: str) -> dict[str, Scalar]:
    if value is None:
        return {}
    if type(value) is DuplicateKeys:
        raise _Reject(f"{label}.{value.duplicate}", "duplicate_key", DUPLICATE_PROBLEM)
    if type(value) is not dict:
        raise _Reject(label, "invalid_type", "must be an object")
    if len(value) > MAX_PROPERTIES:
        raise _Reject(label, "too_many_properties", f"may hold at most {MAX_PROPERTIES} keys")
    for key, item in value.items():
        t = type(item)
        if t is str:
            if len(item) > MAX_STRING:
                raise _Reject(f"{label}.{key}", "too_long", f"must be at most {MAX_STRING} characters")
            if not item.isascii() and not _valid_text(item):
                raise _Reject(f"{label}.{key}", "invalid_string", "must be valid Unicode (no unpaired surrogates)")
        elif t is int:
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise _Reject(f"{label}.{key}", "number_out_of_range", NUMBER_RULE)
        elif t is float:  # only reachable when a caller parsed JSON without parse_float=Decimal
            raise _Reject(f"{label}.{key}", "invalid_type", "must not be a binary float")
        elif t is Decimal:
            why = number_problem(item)
            if why:
                raise _Reject(f"{label}.{key}", "invalid_number" if not item.is_finite() else "number_out_of_range",
                              why)
        elif t is not bool and item is not None:
            raise _Reject(f"{label}.{key}", "invalid_type",
                          "must be a string, number, boolean or null (nested values are not supported)")
        if not key or len(key) > MAX_ID:
            raise _Reject(label, "invalid_key", f"keys must be 1 to {MAX_ID} characters")
        if not key.isascii() and not _valid_text(key):
            raise _Reject(label, "invalid_key", "keys must be valid Unicode (no unpaired surrogates)")
    return value


def canonical_scalar(value: Scalar) -> str:
    """Type-tagged canonical text of a property value (1 and "1" differ; 1.0 == 1)."""
    if value is None:
        return "z:"
    if value is True or value is False:
        return "b:true" if value else "b:false"
    if isinstance(value, int | Decimal):
        d = Decimal(value)
        return "n:" + (format(d.normalize(), "f") if d else "0")
    return "s:" + value


# -- content digest ---------------------------------------------------------------------------
# Version 2: BLAKE2b of customer, type, ts_ms, then key and tagged value of every property (keys
# sorted), each written as a JSON string literal (quoted, escaped, ASCII) and joined with ","
# (the JSON array of those strings, without its brackets): no content can imitate a boundary.
# Version 1 (stored before 2026-12-01, no prefix) joined the same parts with "\x1f", which a
# property string may contain: two payloads could share a digest. A stored version-1 digest is
# never compared with a new one: ``same_content`` recomputes version 2 from the stored event.
DIGEST_PREFIX = "2:"
_json_string = encode_basestring_ascii  # str -> JSON string literal, in C


def digest(customer: str, type_: str, ts_ms: int, properties: Mapping[str, Scalar]) -> str:
    parts = [customer, type_, str(ts_ms)]
    for key in sorted(properties):
        value = properties[key]
        t = type(value)
        parts.append(key)
        # fast paths give exactly what canonical_scalar gives (ints are already normal form)
        parts.append("s:" + value if t is str else "n:" + str(value) if t is int
                     else canonical_scalar(value))
    text = ",".join(map(_json_string, parts))
    return DIGEST_PREFIX + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def same_content(event: Event, stored: Event) -> bool:
    """Is ``stored`` (as read back from the raw store, whatever its digest version) the same
    event as ``event`` (just parsed)? Same id is assumed."""
    if stored.digest.startswith(DIGEST_PREFIX):
        return stored.digest == event.digest
    return digest(stored.customer, stored.type, stored.ts_ms, stored.properties) == event.digest


def _one(raw: Any, cloud: bool, now_ms: int) -> Event:
    if type(raw) is DuplicateKeys:
        raise _Reject(raw.duplicate, "duplicate_key", DUPLICATE_PROBLEM)
    if type(raw) is not dict:
        raise _Reject("", "invalid_type", "each event must be a JSON object")
    if not (_CLOUD_KEYS if cloud else _EVENT_KEYS).issuperset(raw):
        allowed = CLOUDEVENT_FIELDS if cloud else EVENT_FIELDS
        key = next(k for k in raw if k not in allowed)
        raise _Reject(key, "unknown_field", "is not a known field; expected one of: " + ", ".join(allowed))
    event_id = _id(raw, "id")
    if cloud:
        customer = _id(raw, "subject")
        ts_ms = parse_timestamp_ms(raw.get("time"), "time")
        props = _properties(raw.get("data"), "data")
        if raw.get("specversion") != "1.0":
            raise _Reject("specversion", "unsupported", "must be \"1.0\"")
        _name(raw, "source")
    else:
        customer = _id(raw, "customer")
        ts_ms = parse_timestamp_ms(raw.get("timestamp"), "timestamp")
        props = _properties(raw.get("properties"), "properties")
    type_ = _name(raw, "type")
    ts_label = "time" if cloud else "timestamp"
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise _Reject(ts_label, "future_timestamp",
                      "is more than 5 minutes in the future; check the sender's clock")
    if ts_ms < EARLIEST_MS:
        raise _Reject(ts_label, "too_old", "is before 2000-01-01; timestamps are RFC 3339, not epoch numbers")
    return Event(event_id, customer, type_, ts_ms, props, digest(customer, type_, ts_ms, props))


def parse_batch(raws: Iterable[Any], now_ms: int, *, cloud: bool = False
                ) -> tuple[list[tuple[int, Event]], list[EventError]]:
    """Validate each event on its own. Returns (index, event) pairs and per-event errors.

    A repeated id inside one batch: an identical repeat is dropped silently (it is the same
    event); a different payload under an already-seen id is rejected.
    """
    good: list[tuple[int, Event]] = []
    errors: list[EventError] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(raws):
        try:
            event = _one(raw, cloud, now_ms)
        except _Reject as exc:
            raw_id = raw.get("id") if type(raw) is dict else None
            errors.append(EventError(index, raw_id if type(raw_id) is str else None,
                                     exc.field, exc.code, exc.message))
            continue
        previous = seen.get(event.id)
        if previous is None:
            seen[event.id] = event.digest
            good.append((index, event))
        elif previous != event.digest:
            errors.append(EventError(index, event.id, "id", "id_conflict",
                                     "this id appears earlier in the batch with a different payload"))
    return good, errors


def _constant(name: str) -> Decimal:
    return Decimal(name)  # NaN, Infinity, -Infinity: rejected per event as "must be a finite number"


def loads(body: str | bytes) -> Any:
    """JSON with exact decimals: numbers with a fraction or exponent become Decimal.

    Python refuses integer literals of more than 4,300 digits (``sys.int_info``); a body that
    holds one is read again with integers as Decimal, so that only the event carrying it is
    rejected (by the numeric range), not the whole batch. An object that repeats a key comes back
    as a ``json_body.DuplicateKeys`` (``parse_body`` refuses the request for the wrapper's keys, an
    event with one is rejected on its own). Nesting that the parser cannot follow (it recurses: a
    RecursionError, i.e. a 500, before) is an ``InvalidField`` at ``body``; shallower nesting costs
    nothing to check here, since an event's values are flat and anything nested is rejected per
    event."""
    try:
        try:
            return json.loads(body, parse_float=Decimal, parse_constant=_constant, object_pairs_hook=pairs_hook)
        except ValueError as exc:
            try:
                return json.loads(body, parse_float=Decimal, parse_int=Decimal, parse_constant=_constant,
                                  object_pairs_hook=pairs_hook)
            except ValueError:
                raise exc from None
    except RecursionError:
        raise InvalidField("body", f"nests JSON objects and arrays deeper than {MAX_DEPTH} levels",
                           "too_deep") from None
