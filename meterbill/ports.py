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


StreamDecoder = Callable[[Sequence[Mapping[str, Any]]], list[StreamChange]]


class EventStore(Protocol):
    def existing(self, ids: Sequence[str]) -> dict[str, str]: ...
    def put(self, events: Iterable[tuple[Event, str]], accepted_at_ms: int) -> set[str]: ...


class BillingStore(Protocol):
    def put_catalog(self, kind: str, code: str, doc: Mapping[str, Any], expected_version: int | None) -> None: ...
    def get_catalog(self, kind: str, code: str) -> dict[str, Any] | None: ...
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
    def first_usage_bucket(self, customer_id: str) -> int | None: ...
    def get_buckets(self, keys: Sequence[BucketKey]) -> dict[BucketKey, StoredBucket]: ...
    def put_bucket(self, bucket: StoredBucket, expected_version: int | None) -> bool: ...
    def query_buckets(self, customer_id: str, start_s: int, end_s: int) -> list[StoredBucket]: ...
    def invoice_counter(self) -> int: ...
    def commit_invoice(self, invoice: Mapping[str, Any], number_seq: int, customer_id: str,
                       customer_version: int, customer_changes: Mapping[str, Any]) -> None: ...
    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None: ...
    def list_invoices(self, customer_id: str | None, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]: ...
    def put_key(self, digest: str, doc: Mapping[str, Any]) -> None: ...
    def get_key(self, digest: str) -> dict[str, Any] | None: ...
