"""Outbound webhooks, the pure part: event types, endpoint URLs, message ids, the retry delay.

Event types: ``EVENT_TYPES`` is the fixed list an endpoint may subscribe to. Later work adds
its alert by appending to ``EVENT_TYPES`` (``usage.threshold_crossed``,
``budget.threshold_crossed``, ``anomaly.detected`` are reserved for it in ``RESERVED``) and emits
it with ``container.hooks.emit(type, payload, dedupe_key)``; docs/integrations.md, "Outbound
webhooks", lists each type's payload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from meterbill.domain.errors import InvalidField

EVENT_TYPES: tuple[str, ...] = ("invoice.finalized", "invoice.paid", "invoice.overdue", "invoice.voided",
                                "credit_note.created", "sync.failed",
                                # alerts (issue 11): a usage anomaly found, a spend budget's threshold crossed
                                "anomaly.detected", "budget.threshold_crossed")
RESERVED: tuple[str, ...] = ("usage.threshold_crossed",)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
MAX_URL = 2048
MAX_ENDPOINT_TYPES = len(EVENT_TYPES) + len(RESERVED)
RETRY_BASE_S = 30                  # first retry after 30 s, then doubling …
RETRY_MAX_S = 6 * 3600             # … up to 6 hours between attempts
MAX_ATTEMPTS = 15                  # about 2 days of attempts, then ``failed`` (before the queue's DLQ)


def check_url(url: str, field: str = "url") -> str:
    """``url`` if it is an https URL with a host (http only to 127.0.0.1/localhost, for local
    receivers), else InvalidField naming ``field``."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidField(field, f"must be an https URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise InvalidField(field, f"'{url[:80]}' is not a URL") from None
    if not host or parts.username or parts.password:
        raise InvalidField(field, "must name a host, without user or password (https://hooks.example.com/meterbill)")
    if parts.fragment:
        raise InvalidField(field, "must not have a #fragment")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and (host in LOCAL_HOSTS or parts.netloc.split(":")[0] in LOCAL_HOSTS):
        return url
    raise InvalidField(field, "must use https (http only to 127.0.0.1 or localhost, for a local receiver)")


def check_event_types(types: Iterable[str], field: str = "event_types") -> list[str]:
    """The subscribed types, de-duplicated in order; InvalidField for an empty list or a type
    outside ``EVENT_TYPES``."""
    out: list[str] = []
    for t in types:
        if t not in EVENT_TYPES:
            raise InvalidField(field, f"'{str(t)[:60]}' is not an event type; expected some of: {', '.join(EVENT_TYPES)}")
        if t not in out:
            out.append(t)
    if not out:
        raise InvalidField(field, f"must name at least one event type: {', '.join(EVENT_TYPES)}")
    return out


def _digest(*parts: str) -> str:
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()   # parts never run together


def event_id(event_type: str, subject: str) -> str:
    """The event's id (``evt_…``): the same event (type, subject: an invoice id, a credit note id,
    an emit's dedupe key) always has the same id, whichever outbox record or re-drive carried it."""
    return "evt_" + _digest(event_type, subject)


def message_id(event: str, endpoint_id: str) -> str:
    """The ``webhook-id`` of one delivery (``msg_…``): derived from the event and the endpoint, so
    every attempt carries the same id and the receiver de-duplicates on it."""
    return "msg_" + _digest(event, endpoint_id)


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: the receiver's
    ``Retry-After`` when it gave one (capped at RETRY_MAX_S), else RETRY_BASE_S doubling."""
    if retry_after is not None:
        return float(min(max(retry_after, 1.0), RETRY_MAX_S))
    return float(min(RETRY_BASE_S * 2 ** max(attempts - 1, 0), RETRY_MAX_S))


def event_record(event_type: str, subject: str, data: dict[str, object]) -> dict[str, object]:
    """The fields an event's outbox record carries (``emit`` and a ``sync.failed`` write it):
    ``event_type``, ``event_id`` (from type and subject), ``subject``, ``data``. Its outbox id is
    ``event#<event id>``: written twice, it is the same record."""
    if event_type not in EVENT_TYPES:
        raise InvalidField("event_type", f"'{event_type[:60]}' is not an event type; expected one of: "
                                         f"{', '.join(EVENT_TYPES)}")
    if not isinstance(subject, str) or not subject or len(subject) > 512:
        raise InvalidField("dedupe_key", "must be a non-empty text of at most 512 characters")
    return {"event_type": event_type, "event_id": event_id(event_type, subject), "subject": subject, "data": data}


def event_outbox_id(record: dict[str, object]) -> str:
    return f"event#{record['event_id']}"


def body(event: str, event_type: str, at: str, data: Mapping[str, Any]) -> str:
    """The exact text every delivery of an event sends and signs (compact JSON, the Standard
    Webhooks payload structure with the event's id): ``{"id", "type", "timestamp", "data"}``.
    Amounts in ``data`` are exact strings; receivers verify these bytes before parsing them."""
    return json.dumps({"id": event, "type": event_type, "timestamp": at, "data": data},
                      separators=(",", ":"), ensure_ascii=False, default=_exact)


def _exact(value: Any) -> Any:
    """A Decimal read back from storage: an integer stays an integer, an amount its exact text."""
    if type(value).__name__ == "Decimal":
        return int(value) if value == value.to_integral_value() else format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON")
