"""Aggregation: apply one DynamoDB-stream batch of raw events to usage buckets, exactly once.

A Lambda stream batch comes from one shard, in order. Each bucket remembers, per batch
(identified by the sequence number of the batch's first record), the highest sequence
number it has applied. On any failure the handler asks for the whole batch again (same
first record), so a retry skips exactly what was applied and applies the rest.

When a batch has been applied completely, a ``DONE`` record (first -> last sequence number)
is written. A retry of a completed batch (Lambda crashed after the DONE write) skips what it
covers, so bucket markers of completed batches are no longer needed and every bucket write
prunes them: a bucket carries markers only of batches still in flight, whatever the traffic.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow, Underflow, localcontext
from typing import Any

from meterbill.domain.events import Event
from meterbill.domain.instants import from_ms, iso, parse_instant, to_ms
from meterbill.domain.meters import (BucketState, Meter, billed_from, bucket_start, group_key, group_problem,
                                     matches, problem_for)
from meterbill.domain.periods import billing_period
from meterbill.ports import BillingStore, BucketKey, Clock, StoredBucket, StreamChange, StreamDecoder, UsageWatermark
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import NotFound, UnstorableItem

log = logging.getLogger(__name__)
MARKER_TTL_S = 25 * 3600      # streams keep records 24 h: no batch is retried later than that
DONE_TTL_S = 2 * 24 * 3600
MAX_CONFLICT_RETRIES = 8
WRITERS = 16


def seq_key(seq: str) -> tuple[int, str]:
    return (len(seq), seq)


# Bucket arithmetic: DynamoDB numbers carry 38 significant digits; a result that would need more
# is refused (Inexact), never silently rounded.
BUCKET_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN, Emax=125, Emin=-130, traps=[Inexact, Overflow,
                                                                                     Underflow, InvalidOperation])


def storable_number(value: Decimal | None) -> bool:
    """Can DynamoDB store ``value`` exactly? (38 significant digits, 1E-130 <= |x| < 1E+126)"""
    if value is None:
        return True
    if not value.is_finite():
        return False
    if value == 0:
        return True
    significant = len("".join(map(str, value.as_tuple().digits)).rstrip("0"))
    return significant <= 38 and -130 <= value.adjusted() <= 125


def storable(state: BucketState) -> bool:
    return (storable_number(state.sum) and storable_number(state.max) and storable_number(state.min)
            and (state.latest is None or storable_number(state.latest[2]))
            and all(storable_number(v) for v in state.values))


def add_exactly(state: BucketState, todo: list[Contribution]) -> bool:
    """Add the contributions in place; False if a result would not be stored exactly (then
    ``state`` is partly changed and must be discarded)."""
    try:
        with localcontext(BUCKET_CONTEXT):
            for _, event, meter in todo:
                state.add(meter, event)
    except (ArithmeticError, ValueError):
        return False
    return storable(state)


def add_storable(state: BucketState, todo: list[Contribution]) -> tuple[BucketState, list[Contribution]]:
    """The slow path, only when something is wrong: add one contribution at a time and leave out
    (return) each one that would make the bucket unstorable, instead of failing the write, and
    so the batch, forever. Deterministic: a retried batch leaves out the same ones."""
    dead: list[Contribution] = []
    for item in todo:
        trial = copy.deepcopy(state)
        if add_exactly(trial, [item]):
            state = trial
        else:
            dead.append(item)
    return state, dead


@dataclass(slots=True)
class BatchOutcome:
    records: int = 0
    events: int = 0
    buckets_written: int = 0
    skipped_already_applied: int = 0
    invalid: int = 0
    conflicts: int = 0
    dead_lettered: int = 0    # contributions or records kept aside (DEADLETTER items), never retried forever

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


Contribution = tuple[str, Event, Meter]  # (stream sequence number, event, meter)


def closed_or_closing(profile: Mapping[str, Any] | None) -> datetime | None:
    """Up to when a customer's usage is invoiced or being invoiced: the later of the closed-through
    mark and the fence a billing run sets before it reads a period's buckets."""
    if not profile:
        return None
    marks = [parse_instant(profile[k], k) for k in ("closed_through", "closing_through") if profile.get(k)]
    return max(marks) if marks else None


class AggregationService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock,
                 decode: StreamDecoder, watermark: UsageWatermark | None = None) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._decode = decode
        self._watermark = watermark
        self._known_done: set[str] = set()  # completed batch ids: facts, safe to cache

    def apply(self, records: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Apply one stream batch exactly once; then advance the shard's checkpoint (the usage
        watermark billing runs wait for), also when a redelivered batch had nothing left to do."""
        decoded = self._decode(records)
        out = self._apply(decoded)
        if decoded and self._watermark is not None:
            self._watermark.applied(decoded[0].seq, decoded[-1].seq, decoded[-1].created_s)
        return out

    def _apply(self, decoded: list[StreamChange]) -> BatchOutcome:
        out = BatchOutcome(records=len(decoded))
        changes = self._skip_completed(decoded)
        if not changes:
            return out
        batch_id = changes[0].seq
        # read fresh, once per batch: a cached list (10 s) would silently skip the events of a meter
        # created moments ago, and nothing would ever apply them again (docs/decisions.md)
        by_type = self._catalog.meters_by_type(fresh=True)
        contributions: dict[BucketKey, list[Contribution]] = defaultdict(list)
        now = self._clock()
        for change in changes:
            if change.kind == "INVALID":
                out.invalid += 1
                out.dead_lettered += 1
                log.error("stream record %s dead-lettered: %s", change.seq, change.problem)
                self._store.dead_letter(batch_id, f"record#{change.seq}", {
                    "seq": change.seq, "events": [], "problem": change.problem or "", "at": iso(now)})
                continue
            if change.kind == "MODIFY" and change.event is not None and change.old_digest != change.event.digest:
                out.conflicts += 1
                log.error("event id %s was overwritten with different content; the first version "
                          "stays counted", change.event.id)
            if change.kind != "INSERT" or change.event is None:
                continue  # identical rewrites and removals change no usage
            event = change.event
            out.events += 1
            for meter in by_type.get(event.type, ()):
                if not matches(meter, event):
                    continue
                # Ingest rejects both; one that got through (accepted within the meter cache's 10 s
                # of the meter's creation, or stored by an older version) is kept aside, visibly.
                why = problem_for(meter, event)
                problem = f"properties.{meter.property}: {why}" if why else None
                grouping = group_problem(meter, event) if not why else None
                problem = problem or (f"{grouping[0]}: {grouping[1]}" if grouping else None)
                if problem:
                    out.invalid += 1
                    out.dead_lettered += 1
                    log.error("event %s not aggregated by meter %s: %s", event.id, meter.code, problem)
                    self._store.dead_letter(batch_id, f"event#{meter.code}#{event.id}", {
                        "customer": event.customer, "meter": meter.code, "events": [event.id],
                        "seqs": [change.seq], "problem": problem, "at": iso(now)})
                    continue
                key = (event.customer, bucket_start(event.ts_ms), meter.code, group_key(meter, event))
                contributions[key].append((change.seq, event, meter))
        if not contributions:
            self._store.mark_batch_done(batch_id, changes[-1].seq, int(now.timestamp()) + DONE_TTL_S)
            return out
        current = self._store.get_buckets(list(contributions))
        self._known_done |= set(self._store.batches_done(
            {m for b in current.values() for m in b.markers} - self._known_done - {batch_id}))
        # Buckets are independent items: write them concurrently (I/O bound). Any failure
        # propagates, and the whole batch is retried; applied buckets skip themselves.
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            futures = [pool.submit(self._apply_bucket, key, items, current.get(key), batch_id, now.timestamp())
                       for key, items in contributions.items()]
            for future in futures:
                written, skipped, dead = future.result()
                out.buckets_written += written
                out.skipped_already_applied += skipped
                out.dead_lettered += dead
        self._mark_late(contributions, now)
        self._store.mark_batch_done(batch_id, changes[-1].seq, int(now.timestamp()) + DONE_TTL_S)
        self._known_done.add(batch_id)
        if len(self._known_done) > 100_000:
            self._known_done.clear()
        return out

    def _skip_completed(self, changes: list[StreamChange]) -> list[StreamChange]:
        """Drop the records that a completed earlier attempt of this batch already applied."""
        while changes:
            last = self._store.batches_done([changes[0].seq]).get(changes[0].seq)
            if last is None:
                return changes
            changes = [c for c in changes if seq_key(c.seq) > seq_key(last)]
        return changes

    def _apply_bucket(self, key: BucketKey, items: list[Contribution], stored: StoredBucket | None,
                      batch_id: str, now_s: float) -> tuple[int, int, int]:
        """Returns (buckets written, contributions skipped as already applied, dead-lettered)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            markers = dict(stored.markers) if stored else {}
            done = markers.get(batch_id)
            done_seq = seq_key(done.split("|")[0]) if done else None
            todo = [it for it in items if done_seq is None or seq_key(it[0]) > done_seq]
            if not todo:
                return 0, len(items), 0
            state = stored.state if stored else BucketState()
            dead: list[Contribution] = []
            if not add_exactly(state, todo):   # ``state`` is spoiled: start again from the stored one
                fresh = self._store.get_buckets([key]).get(key)
                if (fresh.version if fresh else None) != (stored.version if stored else None):
                    stored = fresh
                    continue
                state, dead = add_storable(fresh.state if fresh else BucketState(), todo)
            if dead:
                self._dead_letter(batch_id, key, dead, "the bucket could not store the result exactly "
                                                       "(beyond DynamoDB's 38-digit numbers)", now_s)
            markers[batch_id] = f"{max((it[0] for it in todo), key=seq_key)}|{int(now_s)}"
            markers = {k: v for k, v in markers.items()
                       if k not in self._known_done and now_s - int(v.split("|")[1]) < MARKER_TTL_S}
            version = stored.version if stored else None
            pages = stored.pages if stored else ()
            try:
                written = self._store.put_bucket(StoredBucket(key, state, markers, (version or 0) + 1, pages), version)
            except UnstorableItem as exc:
                # DynamoDB refuses the item itself (e.g. over 400 KB): the same write fails on every
                # retry, so retrying would only block the shard. Dead-letter the contributions.
                self._dead_letter(batch_id, key, todo, f"the bucket item was refused: {exc}", now_s)
                return 0, len(items) - len(todo), len(todo)
            if written:
                return 1, len(items) - len(todo), len(dead)
            stored = self._store.get_buckets([key]).get(key)  # another writer won: re-read, re-apply
        raise RuntimeError(f"bucket {key} kept changing concurrently; batch will be retried")

    def _dead_letter(self, batch_id: str, key: BucketKey, items: list[Contribution], problem: str,
                     now_s: float) -> None:
        ids = sorted({event.id for _, event, _ in items})
        log.error("usage dead-lettered for bucket %s (%d events): %s", key, len(ids), problem)
        self._store.dead_letter(batch_id, f"bucket#{key[0]}#{key[1]}#{key[2]}#{key[3]}", {
            "customer": key[0], "bucket_start": iso(from_ms(key[1] * 1000)), "meter": key[2], "group": key[3],
            "events": ids, "seqs": sorted({seq for seq, _, _ in items}, key=seq_key), "problem": problem,
            "at": iso(from_ms(int(now_s * 1000)))})

    def _mark_late(self, contributions: Mapping[BucketKey, Any], now: datetime) -> None:
        """A LATE# marker for every invoiced period that received usage in this batch, keyed like
        its invoice (the period as ``closed_periods`` gives it: a shortened first period starts at
        ``started_at``), with the same bucket-to-period rule as the close (``bucket_range``)."""
        starts: dict[str, set[int]] = defaultdict(set)
        for customer, start_s, _, _ in contributions:
            starts[customer].add(start_s)
        # Strongly consistent and uncached, after the bucket writes: a close that fenced the
        # period before reading its buckets is seen here (see BillingService.close_customer).
        profiles = self._store.get_customers(set(starts))
        for customer, bucket_starts in starts.items():
            profile = profiles.get(customer)
            fence = closed_or_closing(profile)
            if fence is None:
                continue
            fence_ms = to_ms(fence)
            late = [s for s in bucket_starts if s * 1000 < fence_ms]  # billed by an invoiced (or closing) period
            if not late:
                continue
            try:
                plan = self._catalog.plan(profile["plan"])
            except NotFound:
                log.error("late usage for customer %s not marked: its plan %s does not exist", customer,
                          profile["plan"])
                continue
            anchor = parse_instant(profile["billing_anchor"], "billing_anchor")
            started = parse_instant(profile["started_at"], "started_at")
            periods = set()
            for start_s in late:
                at = billed_from(start_s, started)
                if at is not None:  # else before the subscription: no period bills it
                    periods.add(billing_period(anchor, plan.interval, profile["timezone"], started, at).start)
            for period_start in sorted(periods):
                self._store.mark_late(customer, iso(period_start), iso(now))
