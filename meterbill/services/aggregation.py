"""Aggregation: apply one DynamoDB-stream batch of raw events to usage items, exactly once.

Usage is stored per customer × meter × dimension group × hour: one item holding the hour's four
15-minute cells, so a batch writes one item where it used to write up to four.

A Lambda stream batch comes from one shard, in order. Each usage item remembers, per batch
(identified by the sequence number of the batch's first record), the highest sequence number it
has applied. On any failure the handler asks for the whole batch again (same first record), so a
retry skips exactly what was applied and applies the rest.

When a batch has been applied completely, its shard's checkpoint (the usage watermark,
``UsageWatermark.applied``) moves to its last record: the batch's one bookkeeping write. A
redelivery of a completed batch (Lambda crashed after that write) skips the records the
checkpoint covers, so item markers of batches the checkpoint passed are no longer needed and every
item write prunes them: an item carries markers only of batches still in flight. One exception
keeps the redrive path exact: Lambda moves past a batch it gave up on (to the on-failure queue),
and that only once the batch's first record is ``GIVE_UP_S`` old (template: infinite retries,
``MaximumRecordAgeInSeconds``). So a marker is pruned only if the checkpoint passed it while its
batch was younger than that; a given-up batch keeps its markers (``MARKER_TTL_S``) and
``meterbill redrive-stream`` re-applies it from them, without the checkpoint shortcut.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow, Underflow, localcontext
from typing import Any

from meterbill.domain.events import Event
from meterbill.domain.instants import from_ms, iso, parse_instant, to_ms
from meterbill.domain.meters import (BucketState, Meter, billed_from, bucket_start, group_key, group_problem,
                                     matches, problem_for)
from meterbill.domain.periods import billing_period
from meterbill.domain.rebuilds import OWNS_S, Rebuild, created_ms, governing, rebuild_from, route
from meterbill.ports import (BillingStore, BucketKey, Checkpoint, Clock, StreamChange, StreamDecoder, UsageItem,
                             UsageWatermark, item_start)
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import NotFound, UnstorableItem

log = logging.getLogger(__name__)
MARKER_TTL_S = 25 * 3600      # streams keep records 24 h: no batch is retried later than that
GIVE_UP_S = 6 * 3600          # template.yaml MaximumRecordAgeInSeconds: Lambda gives up on no younger batch
CLOCK_MARGIN_S = 600          # Lambda's clock vs DynamoDB's ApproximateCreationDateTime
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
    skipped_rebuild: int = 0  # contributions accepted before a usage rebuild's mark: the rebuild counts them

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


@dataclass(frozen=True, slots=True)
class Batch:
    """What one stream batch's item writes need: its marker, which other markers they drop, and
    the usage rebuilds in force (domain/rebuilds.py)."""

    batch_id: str
    written_s: float
    created_s: float                            # the batch's first record (ApproximateCreationDateTime)
    passed: Mapping[str, Checkpoint | None]     # batch id -> the checkpoint of its shard
    rebuilds: tuple[Rebuild, ...] = ()
    accepted: Mapping[str, int | None] = field(default_factory=dict)  # sequence number -> accepted at (ms)

    def value(self, max_seq: str) -> str:
        return f"{max_seq}|{int(self.written_s)}|{int(self.created_s)}"

    def prunable(self, batch_id: str, value: str) -> bool:
        """A marker no retry or redrive can need: older than the stream keeps records, or of a
        batch its shard's checkpoint passed while the batch was too young to be given up (so it
        was completed; a given-up batch's markers stay for ``meterbill redrive-stream``)."""
        parts = value.split("|")
        if self.written_s - int(parts[1]) >= MARKER_TTL_S:
            return True
        ck = self.passed.get(batch_id)
        return (ck is not None and len(parts) > 2 and ck.covers(parts[0])
                and ck.applied_at < int(parts[2]) + GIVE_UP_S - CLOCK_MARGIN_S)

    def unseen(self, rebuild_id: str) -> bool:
        """A rebuild (id: creation ms-…) that still owns events but was not among those read."""
        return rebuild_id not in {r.id for r in self.rebuilds} and \
            created_ms(rebuild_id) > self.written_s * 1000 - OWNS_S * 1000

    def rebuild_of(self, key: BucketKey, cell_s: int) -> Rebuild | None:
        return governing(self.rebuilds, key[2], key[0], cell_s, int(self.written_s * 1000)) if self.rebuilds else None


class AggregationService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock,
                 decode: StreamDecoder, watermark: UsageWatermark | None = None,
                 on_usage: Callable[[set[str]], Any] | None = None) -> None:
        self._on_usage = on_usage   # after a batch: its customers (running bills, services/budgets.py)
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._decode = decode
        self._watermark = watermark

    def apply(self, records: Sequence[Mapping[str, Any]], redrive: bool = False) -> BatchOutcome:
        """Apply one stream batch exactly once; then advance the shard's checkpoint (the usage
        watermark billing runs wait for), also when a redelivered batch had nothing left to do.
        ``redrive``: a batch Lambda gave up on, re-applied from the on-failure queue; the checkpoint
        has moved past it, so only the item markers tell what it applied."""
        decoded = self._decode(records)
        out = self._apply(decoded, redrive)
        if self._on_usage is not None and out.events:
            self._on_usage({c.event.customer for c in decoded if c.kind == "INSERT" and c.event is not None})
        if decoded and self._watermark is not None:
            self._watermark.applied(decoded[0].seq, decoded[-1].seq, decoded[-1].created_s)
        return out

    def _progress(self, seqs: set[str]) -> dict[str, Checkpoint | None]:
        return self._watermark.progress(seqs) if seqs and self._watermark is not None else {}

    def _apply(self, decoded: list[StreamChange], redrive: bool) -> BatchOutcome:
        out = BatchOutcome(records=len(decoded))
        if not decoded:
            return out
        batch_id = decoded[0].seq
        done = None if redrive else self._progress({batch_id}).get(batch_id)
        changes = [c for c in decoded if done is None or not done.covers(c.seq)]  # a redelivered, completed part
        if not changes:
            return out
        # read fresh, once per batch: a cached list (10 s) would silently skip the events of a meter
        # created moments ago, and nothing would ever apply them again (docs/decisions.md)
        by_type = self._catalog.meters_by_type(fresh=True)
        # usage rebuilds in force, read the same way (strongly consistent, once per batch)
        rebuilds = tuple(rebuild_from(d) for d in self._store.rebuilds())
        contributions: dict[BucketKey, list[Contribution]] = defaultdict(list)
        now = self._clock()
        now_ms = int(now.timestamp() * 1000)
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
                cell = bucket_start(event.ts_ms)
                if rebuilds and route(governing(rebuilds, meter.code, event.customer, cell, now_ms),
                                      change.accepted_ms, None) == "skip":
                    out.skipped_rebuild += 1   # accepted before a rebuild's mark: the rebuild counts it
                    continue
                key = (event.customer, item_start(cell), meter.code, group_key(meter, event))
                contributions[key].append((change.seq, event, meter))
        if not contributions:
            return out
        current = self._store.get_usage_items(list(contributions))
        passed = self._progress({m for i in current.values() for m in i.markers} - {batch_id})
        created_s = decoded[0].created_s if decoded[0].created_s is not None else now.timestamp()
        marker = Batch(batch_id, now.timestamp(), created_s, passed, rebuilds,
                       {c.seq: c.accepted_ms for c in changes} if rebuilds else {})
        # Items are independent: write them concurrently (I/O bound). Any failure propagates, and
        # the whole batch is retried; applied items skip themselves.
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            futures = [pool.submit(self._apply_item, key, items, current.get(key), marker)
                       for key, items in contributions.items()]
            for future in futures:
                written, skipped, dead = future.result()
                out.buckets_written += written
                out.skipped_already_applied += skipped
                out.dead_lettered += dead
        self._mark_late({(key[0], bucket_start(event.ts_ms)) for key, items in contributions.items()
                         for _, event, _ in items}, now)
        return out

    def _apply_item(self, key: BucketKey, items: list[Contribution], stored: UsageItem | None,
                    marker: Batch) -> tuple[int, int, int]:
        """Returns (items written, contributions skipped as already applied, dead-lettered)."""
        for _ in range(MAX_CONFLICT_RETRIES):
            markers = dict(stored.markers) if stored else {}
            done = markers.get(marker.batch_id)
            done_seq = seq_key(done.split("|")[0]) if done else None
            todo = [it for it in items if done_seq is None or seq_key(it[0]) > done_seq]
            if not todo:
                return 0, len(items), 0
            by_cell: dict[tuple[str, int], list[Contribution]] = defaultdict(list)
            rebuilt = stored.rebuilt if stored else None
            if rebuilt and marker.unseen(rebuilt):
                # rewritten by a rebuild started after this batch read the rebuilds: what this batch
                # would add may be the rebuild's; retry the batch, which then reads it
                raise RuntimeError(f"usage item {key} was rebuilt by {rebuilt}, unknown to this batch; retrying")
            for it in todo:
                at = bucket_start(it[1].ts_ms)
                where = route(marker.rebuild_of(key, at), marker.accepted.get(it[0]), rebuilt)
                by_cell[("pending" if where == "pending" else "cells", at)].append(it)
            cells = stored.cells if stored else {}
            pending = stored.pending if stored else {}
            self._fold_pending(key, cells, pending, marker)
            dead: dict[tuple[str, int], list[Contribution]] = {}
            target = {"cells": cells, "pending": pending}
            if not all(add_exactly(target[part].setdefault(at, BucketState()), todo_part)
                       for (part, at), todo_part in by_cell.items()):
                # a cell is spoiled: start again from the stored item, one contribution at a time
                fresh = self._store.get_usage_items([key]).get(key)
                if (fresh.version if fresh else None) != (stored.version if stored else None):
                    stored = fresh
                    continue
                cells, pending = (fresh.cells, fresh.pending) if fresh else ({}, {})
                self._fold_pending(key, cells, pending, marker)
                target = {"cells": cells, "pending": pending}
                for (part, at), todo_part in by_cell.items():
                    target[part][at], dead[(part, at)] = add_storable(target[part].get(at, BucketState()), todo_part)
            for (_, at), part in dead.items():
                if part:
                    self._dead_letter(marker.batch_id, (key[0], at, key[2], key[3]), part,
                                      "the bucket could not store the result exactly (beyond DynamoDB's "
                                      "38-digit numbers)", marker.written_s)
            markers = {k: v for k, v in markers.items() if not marker.prunable(k, v)}
            markers[marker.batch_id] = marker.value(max((it[0] for it in todo), key=seq_key))
            version = stored.version if stored else None
            pages = stored.pages if stored else {}
            try:
                written = self._store.put_usage_item(UsageItem(key, cells, markers, (version or 0) + 1, pages,
                                                               pending=pending, rebuilt=rebuilt), version)
            except UnstorableItem as exc:
                # DynamoDB refuses the item itself (e.g. over 400 KB): the same write fails on every
                # retry, so retrying would only block the shard. Dead-letter the contributions.
                for (_, at), part in by_cell.items():
                    self._dead_letter(marker.batch_id, (key[0], at, key[2], key[3]), part,
                                      f"the bucket item was refused: {exc}", marker.written_s)
                return 0, len(items) - len(todo), len(todo)
            if written:
                return 1, len(items) - len(todo), sum(len(d) for d in dead.values())
            stored = self._store.get_usage_items([key]).get(key)  # another writer won: re-read, re-apply
        raise RuntimeError(f"usage item {key} kept changing concurrently; batch will be retried")

    @staticmethod
    def _fold_pending(key: BucketKey, cells: dict[int, BucketState], pending: dict[int, BucketState],
                      batch: Batch) -> None:
        """Pending usage of cells no running rebuild holds any more joins the cells (in place)."""
        for at in [at for at in pending if not (r := batch.rebuild_of(key, at)) or not r.running]:
            cells.setdefault(at, BucketState()).merge(pending.pop(at))

    def _dead_letter(self, batch_id: str, key: BucketKey, items: list[Contribution], problem: str,
                     now_s: float) -> None:
        ids = sorted({event.id for _, event, _ in items})
        log.error("usage dead-lettered for bucket %s (%d events): %s", key, len(ids), problem)
        self._store.dead_letter(batch_id, f"bucket#{key[0]}#{key[1]}#{key[2]}#{key[3]}", {
            "customer": key[0], "bucket_start": iso(from_ms(key[1] * 1000)), "meter": key[2], "group": key[3],
            "events": ids, "seqs": sorted({seq for seq, _, _ in items}, key=seq_key), "problem": problem,
            "at": iso(from_ms(int(now_s * 1000)))})

    def _mark_late(self, buckets: set[tuple[str, int]], now: datetime) -> None:
        mark_late(self._store, self._catalog, buckets, now)


def mark_late(store: BillingStore, catalog: CatalogService, buckets: set[tuple[str, int]], now: datetime) -> None:
    """A LATE# marker for every invoiced period that received usage (``buckets``: customer,
    quarter-hour start), keyed like its invoice (the period as ``closed_periods`` gives it: a
    shortened first period starts at ``started_at``), with the same bucket-to-period rule as the
    close (``bucket_range``). The aggregator calls it after a batch's writes, a usage rebuild after
    its own."""
    starts: dict[str, set[int]] = defaultdict(set)
    for customer, start_s in buckets:
        starts[customer].add(start_s)
    # Strongly consistent and uncached, after the bucket writes: a close that fenced the
    # period before reading its buckets is seen here (see BillingService.close_customer).
    profiles = store.get_customers(set(starts))
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
            plan = catalog.plan(profile["plan"])
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
            store.mark_late(customer, iso(period_start), iso(now))
