"""Ingest: validate a batch event by event, drop exact repeats, store the rest durably.

An event is accepted only once it is in DynamoDB; anything not stored is reported per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from meterbill.domain.events import MAX_BATCH, Event, EventError, loads, parse_batch, same_content
from meterbill.domain.instants import from_ms, iso, parse_instant, to_ms
from meterbill.domain.json_body import DUPLICATE_PROBLEM, DuplicateKeys
from meterbill.domain.meters import billed_from, bucket_start, group_problem, matches, problem_for
from meterbill.ports import BillingStore, Clock, EventStore
from meterbill.services.aggregation import closed_or_closing
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import InvalidField

JSON = "application/json"
CE_ONE = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"


@dataclass(slots=True)
class IngestResult:
    received: int
    accepted: int = 0            # newly stored by this request
    duplicates: int = 0          # already stored with identical content: counted once, harmless
    pending: list[str] = field(default_factory=list)   # ids stored for customers that do not exist yet
    late: list[str] = field(default_factory=list)      # ids stored for periods already invoiced
    # ids stored from before the customer's subscription started: no period bills them
    before_start: list[str] = field(default_factory=list)
    errors: list[EventError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": len(self.errors), "pending": self.pending, "late": self.late,
                "before_start": self.before_start,
                "errors": [e.as_dict() for e in sorted(self.errors, key=lambda e: e.index)]}


def parse_body(body: str | bytes | None, content_type: str | None) -> tuple[list[Any], bool]:
    """Request-level parsing: returns (raw events, is_cloudevents)."""
    media = (content_type or JSON).split(";")[0].strip().lower()
    if media not in (JSON, CE_ONE, CE_BATCH, "text/plain", ""):
        raise InvalidField("content-type", f"'{media}' is not supported; use {JSON}, {CE_ONE} or {CE_BATCH}")
    if not body:
        raise InvalidField("body", "is empty; send {\"events\": [...]} with 1 to 1000 events")
    try:
        doc = loads(body)
    except ValueError as exc:
        raise InvalidField("body", f"is not valid JSON ({exc.args[0][:80]})") from None
    if type(doc) is DuplicateKeys and media != CE_ONE:  # the request's own keys; an event's: that event
        raise InvalidField(doc.duplicate, DUPLICATE_PROBLEM, "duplicate_key")
    if media == CE_ONE:
        return [doc], True
    if media == CE_BATCH:
        if type(doc) is not list:
            raise InvalidField("body", "must be a JSON array of CloudEvents")
        events, cloud = doc, True
    else:
        if type(doc) is not dict or "events" not in doc:
            raise InvalidField("events", "is required: {\"events\": [...]}")
        extra = sorted(set(doc) - {"events"})
        if extra:
            raise InvalidField(extra[0], "is not a known field; expected only 'events'")
        events, cloud = doc["events"], False
        if type(events) is not list:
            raise InvalidField("events", "must be a list")
    if not 0 < len(events) <= MAX_BATCH:
        raise InvalidField("events", f"must hold 1 to {MAX_BATCH} events (got {len(events)})")
    return events, cloud


def _before(ts_ms: int, started_at: datetime) -> bool:
    """No period bills this instant's bucket: it ends before the subscription starts."""
    return ts_ms < to_ms(started_at) and billed_from(bucket_start(ts_ms), started_at) is None


class IngestService:
    def __init__(self, events: EventStore, catalog: CatalogService, clock: Clock, store: BillingStore) -> None:
        self._events = events
        self._catalog = catalog
        self._clock = clock
        self._store = store

    def ingest(self, body: str | bytes | None, content_type: str | None) -> IngestResult:
        raws, cloud = parse_body(body, content_type)
        now_ms = to_ms(self._clock())
        good, errors = parse_batch(raws, now_ms, cloud=cloud)
        result = IngestResult(received=len(raws), errors=errors)
        good = self._check_meters(good, result)
        if not good:
            return result
        customers = self._store.get_customers({e.customer for _, e in good})
        fences = {cid: closed_or_closing(p) for cid, p in customers.items()}
        closed_ms = {cid: to_ms(f) if f is not None else 0 for cid, f in fences.items()}
        starts = {cid: parse_instant(p["started_at"], "started_at") for cid, p in customers.items()
                  if p.get("started_at")}
        flagged = []
        for _, event in good:
            closed = closed_ms.get(event.customer)
            start = starts.get(event.customer)
            flagged.append((event, "pending" if closed is None else
                            "before_start" if start is not None and _before(event.ts_ms, start)
                            else "late" if event.ts_ms < closed else ""))
        # One conditional write per event: the first payload of an id wins, atomically (the adapter's
        # docstring and docs/decisions.md, 2026-12-01). No read first: a taken id comes back stored.
        outcome = self._events.put(flagged, now_ms)
        for (index, event), (_, flag) in zip(good, flagged):
            if event.id in outcome.stored:
                result.accepted += 1
                if flag:
                    getattr(result, flag).append(event.id)
            elif event.id in outcome.existing:
                if same_content(event, outcome.existing[event.id]):
                    result.duplicates += 1
                else:
                    result.errors.append(EventError(index, event.id, "id", "id_conflict",
                                                    "an event with this id was already accepted with a different "
                                                    "payload; event ids are permanent"))
            else:
                result.errors.append(EventError(index, event.id, "", "storage_unavailable",
                                                "could not be stored right now; retry this event (same id)"))
        if result.pending:
            stored = set(result.pending)
            self._note_pending([e for e, _ in flagged if e.id in stored], now_ms)
        return result

    def _note_pending(self, events: list[Event], now_ms: int) -> None:
        """Make usage for unknown customers visible (GET /v1/pending-customers).

        Creating a customer stores its profile, then clears its pending entry. A customer created
        after our check but before our note would keep a stale entry, so the note is followed by a
        strongly consistent read: a customer that exists by now gets its entry cleared here (if it
        is created later still, its own clear_pending comes after our note)."""
        spans: dict[str, list[int]] = {}
        for e in events:
            span = spans.setdefault(e.customer, [0, e.ts_ms])
            span[0] += 1
            span[1] = min(span[1], e.ts_ms)
        for customer, (count, first) in spans.items():
            self._store.note_pending(customer, count, first, iso(from_ms(now_ms)))
        for customer in self._store.get_customers(spans):
            self._store.clear_pending(customer)

    def _check_meters(self, good: list[tuple[int, Event]], result: IngestResult) -> list[tuple[int, Event]]:
        by_type = self._catalog.meters_by_type()
        kept = []
        for index, event in good:
            meters = by_type.get(event.type)
            problem = None
            if meters:
                for meter in meters:
                    if matches(meter, event):
                        why = problem_for(meter, event)
                        if why:
                            problem = (f"properties.{meter.property}", why)
                            break
                        problem = group_problem(meter, event)
                        if problem:
                            break
            if problem:
                result.errors.append(EventError(index, event.id, problem[0], "invalid_for_meter", problem[1]))
            else:
                kept.append((index, event))
        return kept
