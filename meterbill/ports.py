"""Ports: what the services need from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from meterbill.domain.events import Event
from meterbill.domain.meters import BucketState

Clock = Callable[[], datetime]
BucketKey = tuple[str, int, str, str]  # (customer, bucket start epoch s, meter code, group key)


@dataclass(slots=True)
class StoredBucket:
    key: BucketKey
    state: BucketState
    markers: dict[str, str] = field(default_factory=dict)  # stream batch id -> "max seq|epoch s"
    version: int | None = None                             # None: not stored yet
    # ids of sealed overflow pages of per-event values (keep_values meters): the bucket's
    # value multiset is ``state.values`` plus these pages. ``get_buckets`` (the write path)
    # leaves them unread; ``query_buckets`` merges them into ``state.values`` (pages ``()``).
    pages: tuple[str, ...] = ()

    @property
    def customer(self) -> str:
        return self.key[0]

    @property
    def start_s(self) -> int:
        return self.key[1]

    @property
    def meter(self) -> str:
        return self.key[2]

    @property
    def group(self) -> str:
        return self.key[3]


@dataclass(frozen=True, slots=True)
class StreamChange:
    """One record of the raw-events stream, decoded by the adapter."""

    seq: str
    kind: str                    # INSERT | MODIFY | REMOVE
    event: Event | None          # the new image as an Event (INSERT/MODIFY)
    old_digest: str | None = None
    created_s: float | None = None   # the record's ApproximateCreationDateTime (epoch s)
    problem: str | None = None       # kind "INVALID": the record could not be decoded (why)


@dataclass(frozen=True, slots=True)
class UsageLag:
    """Records in the events stream that aggregation has not applied yet, created before the
    moment a caller asked about (a billing run's start)."""

    shard: str
    oldest_unapplied: str        # ISO 8601 creation time of the oldest such record ("" if unknown)
    age_s: float                 # how far behind aggregation is on that shard
    reason: str = "unapplied_records"

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "oldest_unapplied": self.oldest_unapplied, "age_s": f"{self.age_s:.3f}",
                "reason": self.reason}


class UsageWatermark(Protocol):
    """How far aggregation has come through the events stream (adapters/dynamo_stream.py).

    ``applied`` is called by the aggregator after a batch is applied in full; ``wait`` by a
    billing run before it reads any usage: it returns None once every record created before the
    call is applied, or the lag still left after ``max_wait_s``. ``lag`` is a cheap, cached look
    for health checks (no waiting)."""

    def applied(self, first_seq: str, last_seq: str, last_created_s: float | None) -> None: ...
    def wait(self, max_wait_s: float | None = None) -> UsageLag | None: ...
    def lag(self) -> UsageLag | None: ...


@dataclass(frozen=True, slots=True)
class ItemChange:
    """A conditional change to one stored item, committed in the same transaction as the invoice
    or credit note it belongs to (discount use, credit drawn, late-usage marker, invoice credited)."""

    kind: str                        # discount | grant | late | invoice
    owner: str                       # customer id; for "invoice" the invoice id
    key: str                         # discount id, grant id, late period start; "" for invoice
    set: Mapping[str, Any] | None    # attributes to set; None deletes the item
    expect: Mapping[str, Any] = field(default_factory=dict)  # attribute -> value it must still have
    create: bool = False             # put a new item (``set`` is the whole item); must not exist


StreamDecoder = Callable[[Sequence[Mapping[str, Any]]], list[StreamChange]]


@dataclass(slots=True)
class PutOutcome:
    """What storing a batch of events did, per id."""

    stored: set[str] = field(default_factory=set)            # written by this call
    existing: dict[str, Event] = field(default_factory=dict)  # id already taken: the event stored under it
    failed: set[str] = field(default_factory=set)             # not written (storage unavailable): retry


class EventStore(Protocol):
    def put(self, events: Sequence[tuple[Event, str]], accepted_at_ms: int) -> PutOutcome: ...


class BillingStore(Protocol):
    def put_catalog(self, kind: str, code: str, doc: Mapping[str, Any], expected_version: int | None) -> None: ...
    def get_catalog(self, kind: str, code: str, version: int | None = ...) -> dict[str, Any] | None: ...
    def list_catalog(self, kind: str, limit: int = ..., cursor: str | None = ...
                     ) -> tuple[list[dict[str, Any]], str | None]: ...
    def all_catalog(self, kind: str) -> list[dict[str, Any]]: ...
    def put_customer(self, doc: Mapping[str, Any], expected_version: int | None) -> None: ...
    def get_customer(self, customer_id: str) -> dict[str, Any] | None: ...
    def get_customers(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...
    def list_customers(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def due_customers(self, as_of_iso: str, limit: int = ..., cursor: str | None = ...
                      ) -> tuple[list[dict[str, Any]], str | None]: ...
    def mark_late(self, customer_id: str, period_start_iso: str, at_iso: str) -> None: ...
    def fence_close(self, customer_id: str, through_iso: str) -> None: ...
    def note_pending(self, customer_id: str, events: int, first_ms: int, at_iso: str) -> None: ...
    def clear_pending(self, customer_id: str) -> None: ...
    def set_progressive(self, customer_id: str, enabled: bool) -> None: ...
    def progressive_customers(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]: ...
    def list_pending(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def first_usage_bucket(self, customer_id: str) -> int | None: ...
    def batches_done(self, batch_ids: Iterable[str]) -> dict[str, str]: ...
    def dead_letter(self, batch_id: str, key: str, doc: Mapping[str, Any]) -> None: ...
    def list_dead_letters(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def mark_batch_done(self, batch_id: str, last_seq: str, expires_at_s: int) -> None: ...
    def get_buckets(self, keys: Sequence[BucketKey]) -> dict[BucketKey, StoredBucket]: ...
    def put_bucket(self, bucket: StoredBucket, expected_version: int | None) -> bool: ...
    def query_buckets(self, customer_id: str, start_s: int, end_s: int) -> list[StoredBucket]: ...
    def invoice_counter(self) -> int: ...
    def commit_invoice(self, invoice: Mapping[str, Any], number_seq: int, customer_id: str,
                       customer_version: int, customer_changes: Mapping[str, Any],
                       changes: Sequence[ItemChange] = ...) -> None: ...
    def commit_credit_note(self, note: Mapping[str, Any], number_seq: int,
                           changes: Sequence[ItemChange]) -> None: ...
    def credit_note_counter(self) -> int: ...
    def get_credit_note(self, note_id: str) -> dict[str, Any] | None: ...
    def list_credit_notes(self, invoice_id: str | None, limit: int, cursor: str | None
                          ) -> tuple[list[dict[str, Any]], str | None]: ...
    def put_customer_item(self, kind: str, customer_id: str, key: str, doc: Mapping[str, Any]) -> None: ...
    def customer_items(self, kind: str, customer_id: str) -> list[dict[str, Any]]: ...
    def apply_changes(self, changes: Sequence[ItemChange]) -> None: ...
    def save_draft(self, invoice: Mapping[str, Any], customer_id: str) -> None: ...
    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None: ...
    def set_invoice_status(self, invoice_id: str, allowed_from: Iterable[str], status: str,
                           changes: Mapping[str, Any]) -> dict[str, Any]: ...
    def list_invoices(self, customer_id: str | None, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]: ...
    def put_key(self, digest: str, doc: Mapping[str, Any]) -> None: ...
    def get_key(self, digest: str) -> dict[str, Any] | None: ...
