"""Ports: what the services need from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from meterbill.domain.events import Event
from meterbill.domain.meters import BucketState

Clock = Callable[[], datetime]
BucketKey = tuple[str, int, str, str]  # (customer, bucket start epoch s, meter code, group key)
ITEM_SECONDS = 3600  # a usage item holds one hour: four quarter-hour cells (docs/decisions.md)


def item_start(start_s: int) -> int:
    """Start (epoch s) of the usage item (hour) holding the quarter-hour cell starting at ``start_s``."""
    return start_s - start_s % ITEM_SECONDS


class _UsageKeyed:
    """Customer, meter and group of a usage key (customer, start, meter, group)."""

    __slots__ = ()
    key: BucketKey

    @property
    def customer(self) -> str:
        return self.key[0]

    @property
    def meter(self) -> str:
        return self.key[2]

    @property
    def group(self) -> str:
        return self.key[3]


@dataclass(slots=True)
class StoredBucket(_UsageKeyed):
    """One quarter-hour bucket as readers see it (rating, usage views, exports): a cell of a stored
    :class:`UsageItem` (``query_buckets`` merges every overflow page into ``state``)."""

    key: BucketKey
    state: BucketState
    markers: dict[str, str] = field(default_factory=dict)  # the item's stream batch markers
    version: int | None = None                             # the item's version; None: not stored yet
    pages: tuple[str, ...] = ()                            # sealed overflow pages not merged yet

    @property
    def start_s(self) -> int:
        return self.key[1]


@dataclass(slots=True)
class UsageItem(_UsageKeyed):
    """One stored usage item, the unit the aggregator reads and writes (one write each):
    customer × meter × dimension group × hour, holding the hour's quarter-hour cells. An item
    written before hour items existed (``legacy``) holds one cell, the quarter-hour of its key.
    Markers and version are per item (docs/decisions.md, "Fewer writes per event")."""

    key: BucketKey                                         # (customer, hour start — legacy: its quarter-hour, meter, group)
    cells: dict[int, BucketState] = field(default_factory=dict)       # cell start epoch s -> state
    markers: dict[str, str] = field(default_factory=dict)  # stream batch id -> "max seq|written s|created s"
    version: int | None = None                             # None: not stored yet
    # per cell: ids of sealed overflow pages of per-event values (keep_values meters) or distinct
    # values (unique_count): a cell's values are ``state.values`` / ``state.uniques`` plus these
    # pages. ``get_usage_items`` (the write path) leaves them unread; ``read_item_pages`` merges them.
    pages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    legacy: bool = False
    # while a usage rebuild runs: usage accepted after its mark, for cells it has not rebuilt yet
    # (folded into ``cells`` by the rebuild's write; readers see cells + pending)
    pending: dict[int, BucketState] = field(default_factory=dict)
    rebuilt: str | None = None                             # id of the rebuild that last rewrote the item

    def buckets(self) -> list[StoredBucket]:
        """The item's quarter-hour buckets, in time order (a cell's pending usage merged in)."""
        c, _, m, g = self.key
        out = []
        for start in sorted(set(self.cells) | set(self.pending)):
            state = self.cells.get(start, BucketState())
            if start in self.pending:
                state = merged(state, self.pending[start])
            out.append(StoredBucket((c, start, m, g), state, self.markers, self.version, self.pages.get(start, ())))
        return out


def merged(a: BucketState, b: BucketState) -> BucketState:
    """A new state: ``a`` then ``b`` (neither changed)."""
    out = BucketState(a.count, a.sum, a.max, a.min, a.latest, set(a.uniques), dict(a.values))
    out.merge(b)
    return out


@dataclass(frozen=True, slots=True)
class StreamChange:
    """One record of the raw-events stream, decoded by the adapter."""

    seq: str
    kind: str                    # INSERT | MODIFY | REMOVE
    event: Event | None          # the new image as an Event (INSERT/MODIFY)
    old_digest: str | None = None
    created_s: float | None = None   # the record's ApproximateCreationDateTime (epoch s)
    problem: str | None = None       # kind "INVALID": the record could not be decoded (why)
    accepted_ms: int | None = None   # when ingest accepted the event (the raw item's ``at``)


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


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A stream shard's checkpoint: every record of the shard up to ``seq`` was applied by a
    completed batch, or passed over after Lambda gave up on its batch (docs/decisions.md, "Fewer
    writes per event"); ``applied_at`` is when it last moved (epoch s)."""

    seq: str
    applied_at: float

    def covers(self, seq: str) -> bool:
        return (len(seq), seq) <= (len(self.seq), self.seq)


class UsageWatermark(Protocol):
    """How far aggregation has come through the events stream (adapters/dynamo_stream.py).

    ``applied`` is called by the aggregator after a batch is applied in full; ``progress`` gives
    the aggregator, per sequence number, the checkpoint of the shard holding it (None when the
    shard or its checkpoint is unknown); ``wait`` by a billing run before it reads any usage: it
    returns None once every record created before the call is applied, or the lag still left after
    ``max_wait_s``. ``lag`` is a cheap, cached look for health checks (no waiting)."""

    def applied(self, first_seq: str, last_seq: str, last_created_s: float | None) -> None: ...
    def progress(self, seqs: Iterable[str]) -> dict[str, Checkpoint | None]: ...
    def wait(self, max_wait_s: float | None = None) -> UsageLag | None: ...
    def check(self, cutoff_s: float) -> UsageLag | None: ...
    def lag(self) -> UsageLag | None: ...


class WorkQueue(Protocol):
    """The close queue (adapters/sqs_queue.py): at-least-once delivery of JSON messages."""

    def send(self, messages: Sequence[Mapping[str, Any]]) -> None: ...
    def delay(self, receipt: str, seconds: int) -> None: ...


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
    def dead_letter(self, batch_id: str, key: str, doc: Mapping[str, Any]) -> None: ...
    def list_dead_letters(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def rebuilds(self) -> list[dict[str, Any]]: ...
    def put_rebuild(self, doc: Mapping[str, Any], create: bool) -> None: ...
    def get_usage_items(self, keys: Sequence[BucketKey], legacy: bool = ...) -> dict[BucketKey, UsageItem]: ...
    def put_usage_item(self, item: UsageItem, expected_version: int | None) -> bool: ...
    def query_buckets(self, customer_id: str, start_s: int, end_s: int) -> list[StoredBucket]: ...
    def invoice_counter(self) -> int: ...
    def commit_invoice(self, invoice: Mapping[str, Any], customer_id: str, customer_version: int,
                       customer_changes: Mapping[str, Any], changes: Sequence[ItemChange] = ...) -> None: ...
    def invoices_to_number(self, limit: int) -> list[tuple[str, str]]: ...
    def number_invoices(self, first_seq: int, numbered: Sequence[tuple[str, str, str]], at: str) -> None: ...
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
                           changes: Mapping[str, Any], outbox_at: str | None = None) -> dict[str, Any]: ...
    def list_invoices(self, customer_id: str | None, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]: ...
    def put_key(self, digest: str, doc: Mapping[str, Any]) -> None: ...
    def get_key(self, digest: str) -> dict[str, Any] | None: ...
    def list_keys(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def find_key(self, key_id: str) -> dict[str, Any] | None: ...
    def revoke_key(self, digest: str, at_iso: str) -> dict[str, Any]: ...
    def touch_key(self, digest: str, at_iso: str) -> None: ...
    def unlisted_keys(self) -> list[dict[str, Any]]: ...
    def assign_key_id(self, digest: str, key_id: str) -> bool: ...


class RunStore(BillingStore, Protocol):
    """Billing runs and their per-customer outcomes (adapters/dynamo_runs.py)."""

    def create_run(self, doc: Mapping[str, Any]) -> tuple[dict[str, Any], bool]: ...
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def list_runs(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def set_run_fields(self, run_id: str, fields: Mapping[str, Any], expect_status: str) -> bool: ...
    def advance_dispatch(self, run_id: str, expect: str, new: str, queued: int, status: str | None = ...
                         ) -> bool: ...
    def get_outcome(self, run_id: str, kind: str, customer: str) -> dict[str, Any] | None: ...
    def record_outcome(self, run_id: str, outcome: Mapping[str, Any], previous: Mapping[str, Any] | None,
                       counts: Mapping[str, int]) -> bool: ...
    def finish_run(self, run_id: str, counters: Mapping[str, int], finished_at: str) -> bool: ...
    def run_outcomes(self, run_id: str, status: str | None, limit: int, cursor: str | None
                     ) -> tuple[list[dict[str, Any]], str | None]: ...


class PrivacyStore(BillingStore, Protocol):
    """What export and erase need beyond the billing store (services/privacy.py)."""

    def customer_records(self, customer_id: str) -> list[dict[str, Any]]: ...
    def get_pending(self, customer_id: str) -> dict[str, Any] | None: ...
    def all_invoices(self, customer_id: str) -> list[dict[str, Any]]: ...
    def all_credit_notes(self, invoice_id: str) -> list[dict[str, Any]]: ...
    def scrub_customer_copy(self, kind: str, doc_id: str, remove: Sequence[str],
                            marks: Mapping[str, Any]) -> bool: ...
    def usage_items(self, customer_id: str) -> list[UsageItem]: ...
    def read_item_pages(self, items: Sequence[UsageItem], cells: set[tuple[BucketKey, int]] | None = ...) -> None: ...
    def rewrite_usage_item(self, old: UsageItem, new: UsageItem, target_version: int | None) -> bool: ...
    def orphan_pages(self, customer_id: str) -> list[tuple[str, str]]: ...
    def delete_keys(self, keys: Sequence[tuple[str, str]]) -> None: ...
    def dead_letters_of(self, customer_id: str) -> list[dict[str, Any]]: ...
    def set_fields(self, pk: str, sk: str, fields: Mapping[str, Any]) -> None: ...
    def plan_versions(self) -> list[dict[str, Any]]: ...
    def start_erasure(self, customer_id: str, doc: Mapping[str, Any]) -> dict[str, Any]: ...
    def get_erasure(self, customer_id: str) -> dict[str, Any] | None: ...
    def pending_erasures(self) -> list[dict[str, Any]]: ...
    def finish_erasure(self, customer_id: str, requested_at: str) -> None: ...


class RebuildStore(BillingStore, Protocol):
    """What a usage rebuild needs beyond the billing store (services/rebuild.py)."""

    def usage_items_between(self, customer_id: str, start_s: int, end_s: int) -> list[UsageItem]: ...
    def read_item_pages(self, items: Sequence[UsageItem], cells: set[tuple[BucketKey, int]] | None = ...) -> None: ...
    def replace_usage_items(self, new: UsageItem, expected_version: int | None,
                            remove: Sequence[UsageItem]) -> bool: ...
    def get_erasure(self, customer_id: str) -> dict[str, Any] | None: ...
    def pending_erasures(self) -> list[dict[str, Any]]: ...


class RawEventScan(Protocol):
    """The raw events of one type (and customer), read by a (parallel) Scan of the events table."""

    def events_of_type(self, event_type: str, customer: str | None, segment: int = ..., segments: int = ...
                       ) -> Iterator[tuple[list[tuple[Event, int]], int, int]]: ...


class EventScan(Protocol):
    """The raw events of some customers, found by scanning the events table (no customer index)."""

    def events_of(self, customers: Sequence[str], segment: int = ..., segments: int = ...
                  ) -> Iterable[tuple[Any, dict[str, Any]]]: ...
    def replace_properties(self, item: Any, properties: Mapping[str, Any]) -> bool: ...


class AlertSink(Protocol):
    """Where an alert goes (issue 11): ``adapters/webhook_alerts.py`` POSTs it to a configured URL;
    the outbound-webhook service's ``emit(event_type, payload, dedupe_key)`` has the same shape.
    Raises when the alert did not go out (it is sent again later; ``dedupe_key`` names it)."""

    def send(self, event_type: str, payload: Mapping[str, Any], dedupe_key: str) -> None: ...


class AnomalyStore(BillingStore, Protocol):
    """Detected anomalies (adapters/dynamo_anomalies.py)."""

    def put_anomaly(self, doc: Mapping[str, Any], alert_due: bool) -> str: ...
    def anomalies_of(self, customer_id: str, since_s: int) -> list[dict[str, Any]]: ...
    def list_anomalies(self, customer: str | None, meter: str | None, kind: str | None, since_s: int,
                       since_iso: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...
    def pending_alerts(self, limit: int) -> list[dict[str, Any]]: ...
    def alert_sent(self, customer_id: str, start_s: int, meter: str, kind: str, at_iso: str) -> None: ...
class ReportReader(Protocol):
    """Invoices and customers read page by page for reports (``adapters/dynamo_reports.py``), and
    the read capacity that cost."""

    rcu: float
    items: int

    def invoices(self, customer_id: str | None, period_from: str, period_to: str,
                 lines: bool = ...) -> Iterator[dict[str, Any]]: ...
    def customers(self) -> Iterator[dict[str, Any]]: ...
