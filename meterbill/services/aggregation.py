"""Aggregation: apply one DynamoDB-stream batch of raw events to usage buckets, exactly once.

A Lambda stream batch comes from one shard, in order. Each bucket remembers, per batch
(identified by the sequence number of the batch's first record), the highest sequence
number it has applied. On any failure the handler asks for the whole batch again (same
first record), so a retry skips exactly what was applied and applies the rest.
Batch markers older than ``MARKER_TTL_S`` are pruned.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.adapters.dynamo_events import image_to_event
from meterbill.domain.events import Event
from meterbill.domain.instants import from_ms, iso, parse_instant, to_ms
from meterbill.domain.meters import BucketState, Meter, bucket_start, group_key, matches, problem_for
from meterbill.domain.periods import period_containing
from meterbill.ports import BillingStore, Clock
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import NotFound

log = logging.getLogger(__name__)
MARKER_TTL_S = 7 * 24 * 3600
MAX_CONFLICT_RETRIES = 8
WRITERS = 16


def seq_key(seq: str) -> tuple[int, str]:
    return (len(seq), seq)


@dataclass(slots=True)
class BatchOutcome:
    records: int = 0
    events: int = 0
    buckets_written: int = 0
    skipped_already_applied: int = 0
    invalid: int = 0
    conflicts: int = 0


def state_from_doc(doc: dict[str, Any]) -> BucketState:
    latest = None
    if "lt" in doc:
        latest = (int(doc["lt"]), str(doc["li"]), Decimal(doc["lv"]))
    return BucketState(count=int(doc.get("n", 0)), sum=Decimal(doc.get("s", 0)),
                       max=doc.get("mx"), min=doc.get("mn"), latest=latest,
                       uniques=set(doc.get("u", ())))


def state_to_doc(state: BucketState) -> dict[str, Any]:
    doc: dict[str, Any] = {"n": state.count, "s": state.sum, "mx": state.max, "mn": state.min}
    if state.latest is not None:
        doc.update(lt=state.latest[0], li=state.latest[1], lv=state.latest[2])
    if state.uniques:
        doc["u"] = set(state.uniques)
    return doc


class AggregationService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock

    def apply(self, records: list[dict[str, Any]]) -> BatchOutcome:
        out = BatchOutcome(records=len(records))
        if not records:
            return out
        batch_id = records[0]["dynamodb"]["SequenceNumber"]
        by_type = self._catalog.meters_by_type()
        contributions: dict[tuple[str, str], list[tuple[str, Event, Meter]]] = defaultdict(list)
        for rec in records:
            event = self._event_of(rec, out)
            if event is None:
                continue
            out.events += 1
            seq = rec["dynamodb"]["SequenceNumber"]
            for meter in by_type.get(event.type, ()):
                if not matches(meter, event):
                    continue
                if problem_for(meter, event):
                    out.invalid += 1
                    log.warning("event %s not aggregated by meter %s: %s", event.id, meter.code,
                                problem_for(meter, event))
                    continue
                g = group_key(meter, event)
                key = (f"U#{event.customer}", f"{bucket_start(event.ts_ms):012d}#{meter.code}#{g}")
                contributions[key].append((seq, event, meter))
        if not contributions:
            return out
        now = self._clock()
        current = self._store.get_buckets(list(contributions))
        # Buckets are independent items: write them concurrently (I/O bound). Any failure
        # propagates, and the whole batch is retried; applied buckets skip themselves.
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            for future in [pool.submit(self._apply_bucket, key, items, current.get(key), batch_id,
                                       now.timestamp()) for key, items in contributions.items()]:
                written, skipped = future.result()
                out.buckets_written += written
                out.skipped_already_applied += skipped
        self._mark_late(contributions, now)
        return out

    def _event_of(self, rec: dict[str, Any], out: BatchOutcome) -> Event | None:
        name = rec.get("eventName")
        data = rec["dynamodb"]
        if name == "INSERT":
            return image_to_event(data["NewImage"])
        if name == "MODIFY":
            old, new = data.get("OldImage", {}), data.get("NewImage", {})
            if old.get("h") != new.get("h"):
                out.conflicts += 1
                log.error("event id %s was overwritten with different content; the first version "
                          "stays counted", new.get("id", {}).get("S"))
        return None

    def _apply_bucket(self, key: tuple[str, str], items: list[tuple[str, Event, Meter]],
                      doc: dict[str, Any] | None, batch_id: str, now_s: float) -> tuple[int, int]:
        """Returns (buckets written, contributions skipped as already applied)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            markers: dict[str, str] = dict(doc.get("ap", {})) if doc else {}
            done = markers.get(batch_id)
            done_seq = seq_key(done.split("|")[0]) if done else None
            todo = [it for it in items if done_seq is None or seq_key(it[0]) > done_seq]
            if not todo:
                return 0, len(items)
            state = state_from_doc(doc) if doc else BucketState()
            for _, event, meter in todo:
                state.add(meter, event)
            markers[batch_id] = f"{max((it[0] for it in todo), key=seq_key)}|{int(now_s)}"
            markers = {k: v for k, v in markers.items() if now_s - int(v.split("|")[1]) < MARKER_TTL_S}
            meter = todo[0][2]
            version = int(doc["v"]) if doc else None
            new_doc = {"pk": key[0], "sk": key[1], "m": meter.code, "c": key[0][2:],
                       "g": key[1].split("#", 2)[2], "bs": int(key[1][:12]),
                       **state_to_doc(state), "ap": markers, "v": (version or 0) + 1}
            if self._store.put_bucket(new_doc, version):
                return 1, len(items) - len(todo)
            doc = self._store.get_buckets([key]).get(key)  # another writer won: re-read, re-apply
        raise RuntimeError(f"bucket {key} kept changing concurrently; batch will be retried")

    def _mark_late(self, contributions: dict[tuple[str, str], list[Any]], now: Any) -> None:
        earliest: dict[str, int] = {}
        for (pk, sk) in contributions:
            customer = pk[2:]
            bs = int(sk[:12])
            earliest[customer] = min(bs, earliest.get(customer, bs))
        profiles = self._catalog.customers(set(earliest))
        for customer, bs in earliest.items():
            profile = profiles.get(customer)
            if not profile or not profile.get("closed_through"):
                continue
            closed = parse_instant(profile["closed_through"], "closed_through")
            if bs * 1000 < to_ms(closed):
                try:
                    plan = self._catalog.plan(profile["plan"])
                except NotFound:
                    continue
                period = period_containing(parse_instant(profile["billing_anchor"], "billing_anchor"),
                                           plan.interval, profile["timezone"], from_ms(bs * 1000))
                self._store.mark_late(customer, iso(period.start), iso(now))
