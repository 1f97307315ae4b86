"""Rebuilding usage from the raw events (`meterbill usage rebuild`), racing the live aggregator
without losing or double counting an event (docs/decisions.md, "Rebuilding usage").

1. A rebuild record (``REBUILD`` / id, read by the aggregator with the meters, once per batch)
   with a *mark* = now + ``MARGIN_S``. From then on the aggregator skips this meter's events
   accepted before the mark (the rebuild counts them) and puts those accepted at or after it into
   the item's pending cells until the rebuild has rewritten the item (domain/rebuilds.py).
2. Wait until mark + margin: every event accepted before the mark is stored (its put was stamped
   before the mark; an ingest request lives at most 30 s). An aggregator batch that read the
   records before this one existed and meets an item this rebuild already rewrote fails and is
   retried (``Batch.unseen``), so it never adds the rebuild's events again.
3. Scan the events table (parallel segments, strongly consistent) for the meter's event type and
   compute each usage item's cells from the events accepted before the mark.
4. Write each item in scope with a version-conditional put: cells := rebuilt ⊕ pending, pending
   cleared, ``rebuilt`` = this rebuild (quarter-hour items of the old layout in scope are deleted
   in the same transaction). A write that would change nothing is skipped, so a re-run is free.
5. Late-usage markers for invoiced periods whose usage changed (the next billing run re-rates them
   and issues the adjustment or credit note), then the record is marked done. It keeps owning the
   events accepted before its mark for 25 h (a lagging stream can still deliver them).

While a rebuild runs, billing runs finalize nothing (the usage watermark reports it as a lag:
invoices stay drafts with ``waiting_for_usage``). A crashed rebuild is re-run with the same scope:
it resumes under the same id and mark.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.instants import iso, parse_instant
from meterbill.domain.meters import (BUCKET_SECONDS, BucketState, Meter, bucket_start, group_key, group_problem,
                                     matches, problem_for)
from meterbill.domain.rebuilds import MARGIN_S, OWNS_S, Rebuild, rebuild_from
from meterbill.ports import BucketKey, Clock, RawEventScan, RebuildStore, UsageItem, item_start
from meterbill.services.aggregation import add_exactly, mark_late
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import Conflict, NotFound

log = logging.getLogger(__name__)
END_MAX = 10**12 // BUCKET_SECONDS * BUCKET_SECONDS   # item sort keys hold 12-digit starts
RETRIES = 8
WRITERS = 8
Progress = Callable[[str, int, int], None]   # (phase, done, total or 0 when unknown)


@dataclass(slots=True)
class RebuildReport:
    rebuild: Rebuild
    events_scanned: int = 0           # items the Scan read (all types)
    events_counted: int = 0           # contributions accepted before the mark, in scope
    events_not_aggregatable: int = 0  # what the aggregator dead-letters (missing/bad property, group too long)
    bytes_read: int = 0               # as billed: consumed read capacity x 4 KB
    read_units: float = 0.0           # strongly consistent Scan: 1 RCU per 4 KB
    items_written: int = 0
    items_unchanged: int = 0
    buckets_changed: int = 0          # quarter-hours whose usage changed (late markers for invoiced ones)
    unstorable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rebuild": self.rebuild.as_dict(), "mark": iso(datetime.fromtimestamp(self.rebuild.mark_ms / 1000,
                                                                                     tz=timezone.utc)),
                "events_scanned": self.events_scanned, "events_counted": self.events_counted,
                "events_not_aggregatable": self.events_not_aggregatable, "read_units": round(self.read_units, 1),
                "items_written": self.items_written, "items_unchanged": self.items_unchanged,
                "buckets_changed": self.buckets_changed, "unstorable": self.unstorable}


def grid_instant(text: str | None, name: str, default: int) -> int:
    """An ISO instant on the 15-minute grid as epoch s (``default`` when not given)."""
    if text is None:
        return default
    at = parse_instant(text, name)
    s = int(at.timestamp())
    if s % BUCKET_SECONDS or at.microsecond:
        raise InvalidField(name, "must lie on the 15-minute grid (usage is kept per 15 minutes), e.g. "
                                 "2026-10-01T00:00:00Z")
    return s


class RebuildService:
    def __init__(self, store: RebuildStore, events: RawEventScan, catalog: CatalogService, clock: Clock,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._events = events
        self._catalog = catalog
        self._clock = clock
        self._sleep = sleep

    # -- 1. the record -----------------------------------------------------------------------
    def start(self, meter_code: str, customer: str | None = None, start: str | None = None,
              end: str | None = None, margin_s: float = MARGIN_S) -> Rebuild:
        """Create the rebuild record, or resume the running one of the same scope (a crashed run).
        ``margin_s`` must exceed the longest an ingest request or an aggregator batch can run
        (30 s Lambda timeouts on AWS; the default leaves 4x that)."""
        meter = self._meter(meter_code)
        start_s = grid_instant(start, "from", 0)
        end_s = grid_instant(end, "to", END_MAX)
        if end_s <= start_s:
            raise InvalidField("to", "must be after 'from'")
        if customer is not None and self._store.get_erasure(customer) is not None or \
                customer is None and self._store.pending_erasures():
            raise Conflict("an erasure awaits the raw-event sweep: rebuilding now would restore personal values "
                           "from the raw events; run `meterbill privacy sweep` first", field="customer")
        now_ms = int(self._clock().timestamp() * 1000)
        margin_ms = int(margin_s * 1000)
        wanted = Rebuild("", meter.code, customer, start_s, end_s, now_ms + margin_ms, True, margin_ms)
        for r in (rebuild_from(d) for d in self._store.rebuilds()):
            if not r.running or not r.overlaps(wanted):
                continue
            if (r.customer, r.start_s, r.end_s) == (customer, start_s, end_s):
                return r   # resume: same id, same mark
            raise Conflict(f"rebuild {r.id} of meter '{meter.code}' is running over an overlapping scope; "
                           f"re-run it (same --customer/--from/--to) to finish it first", field="meter")
        rebuild = Rebuild(f"{now_ms}-{secrets.token_hex(3)}", meter.code, customer, start_s, end_s, wanted.mark_ms,
                          True, margin_ms)
        self._store.put_rebuild({**rebuild.as_dict(), "created_at": iso(self._clock())}, create=True)
        return rebuild

    def _meter(self, code: str) -> Meter:
        for meters in self._catalog.meters_by_type(fresh=True).values():
            for m in meters:
                if m.code == code:
                    return m
        raise NotFound(f"meter '{code}' does not exist", field="meter")

    # -- 2.-5. -----------------------------------------------------------------------------------
    def run(self, rebuild: Rebuild, segments: int = 4, progress: Progress | None = None) -> RebuildReport:
        report = RebuildReport(rebuild)
        tell = progress or (lambda *_: None)
        self._wait_until((rebuild.mark_ms + rebuild.margin_ms) / 1000, tell)
        meter = self._meter(rebuild.meter)
        rebuilt = self._scan(rebuild, meter, segments, report, tell)
        if report.unstorable:   # nothing written: the record stays running (billing waits), the cause named
            raise Conflict(f"usage beyond DynamoDB's 38-digit numbers in {', '.join(report.unstorable[:5])}: "
                           f"the rebuild stays running (docs/decisions.md, 'Rebuilding usage')", field="meter")
        keys, legacy = self._items_in_scope(rebuild, set(rebuilt))
        changed: set[tuple[str, int]] = set()
        lock = threading.Lock()
        done = [0]

        def write(key: BucketKey) -> None:
            cells_changed = self._write(rebuild, key, rebuilt.get(key, {}), legacy.get(key, []), report, lock)
            with lock:
                changed.update((key[0], at) for at in cells_changed)
                done[0] += 1
                tell("write", done[0], len(keys))

        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(write, sorted(keys)))
        now = self._clock()
        mark_late(self._store, self._catalog, changed, now)
        report.buckets_changed = len(changed)
        self._store.put_rebuild({**rebuild.as_dict(), "running": False, "done_at": iso(now),
                                 "expires_at": rebuild.mark_ms // 1000 + OWNS_S}, create=False)
        report.rebuild = replace(rebuild, running=False)
        return report

    def _wait_until(self, at_s: float, tell: Progress) -> None:
        total = max(0, int(at_s - self._clock().timestamp()))
        while (left := at_s - self._clock().timestamp()) > 0:
            tell("wait", total - int(left), total)
            self._sleep(min(left, 1.0))
        tell("wait", total, total)

    def _scan(self, rebuild: Rebuild, meter: Meter, segments: int, report: RebuildReport,
              tell: Progress) -> dict[BucketKey, dict[int, BucketState]]:
        """Per usage item in scope: its cells from the events accepted before the mark."""
        states: dict[BucketKey, dict[int, BucketState]] = defaultdict(dict)
        lock = threading.Lock()

        def segment(i: int) -> None:
            for events, scanned, size in self._events.events_of_type(meter.event_type, rebuild.customer, i, segments):
                with lock:
                    report.events_scanned += scanned
                    report.bytes_read += size
                    report.read_units += size / 4096
                    for event, accepted_ms in events:
                        self.count(rebuild, meter, event, accepted_ms, states, report)
                    tell("scan", report.events_scanned, 0)

        with ThreadPoolExecutor(max(1, segments)) as pool:
            list(pool.map(segment, range(max(1, segments))))
        return dict(states)

    @staticmethod
    def count(rebuild: Rebuild, meter: Meter, event: Any, accepted_ms: int,
              states: dict[BucketKey, dict[int, BucketState]], report: RebuildReport) -> None:
        """The aggregator's rule for one raw event and meter, into ``states`` (also the recount of
        services/reconciliation.py)."""
        cell = bucket_start(event.ts_ms)
        if accepted_ms >= rebuild.mark_ms or not rebuild.covers(meter.code, event.customer, cell) \
                or not matches(meter, event):
            return
        if problem_for(meter, event) or group_problem(meter, event):
            report.events_not_aggregatable += 1   # the aggregator dead-letters these: not usage
            return
        key = (event.customer, item_start(cell), meter.code, group_key(meter, event))
        state = states[key].setdefault(cell, BucketState())
        if not add_exactly(state, [("", event, meter)]):
            report.unstorable.append(f"{key}@{cell}")
        report.events_counted += 1

    def _items_in_scope(self, rebuild: Rebuild, rebuilt: set[BucketKey]
                        ) -> tuple[set[BucketKey], dict[BucketKey, list[UsageItem]]]:
        """Keys of every hour item to write: those rebuilt, and those stored in scope (their usage
        may have no raw event before the mark: pending only); stored legacy quarter-hour items in
        scope, by the hour item that replaces them."""
        customers = {rebuild.customer} if rebuild.customer else {k[0] for k in rebuilt} | self._all_customers()
        keys = set(rebuilt)
        legacy: dict[BucketKey, list[UsageItem]] = defaultdict(list)
        for customer in sorted(c for c in customers if c):
            for item in self._store.usage_items_between(customer, rebuild.start_s, rebuild.end_s):
                if item.meter != rebuild.meter or not any(rebuild.covers(item.meter, customer, at) for at in
                                                          (*item.cells, *item.pending)):
                    continue
                hour = (customer, item_start(item.key[1]), item.meter, item.group)
                keys.add(hour)
                if item.legacy:
                    legacy[hour].append(item)
        return keys, dict(legacy)

    def _all_customers(self) -> set[str]:
        out: set[str] = set()
        rows, cursor = self._store.list_customers(100, None)
        while True:
            out |= {r["id"] for r in rows}
            if not cursor:
                return out
            rows, cursor = self._store.list_customers(100, cursor)

    def _write(self, rebuild: Rebuild, key: BucketKey, cells: dict[int, BucketState], legacy: list[UsageItem],
               report: RebuildReport, lock: threading.Lock) -> set[int]:
        """Write one hour item: in-scope cells := rebuilt ⊕ pending. Returns the cells whose usage
        changed (for late-usage markers)."""
        in_scope = {at for at in range(key[1], key[1] + 4 * BUCKET_SECONDS, BUCKET_SECONDS)
                    if rebuild.covers(key[2], key[0], at)}
        for _ in range(RETRIES):
            stored = self._store.get_usage_items([key]).get(key)
            old_legacy = [fresh for old in legacy
                          if (fresh := self._store.get_usage_items([old.key], legacy=True).get(old.key))]
            before: dict[int, BucketState] = defaultdict(BucketState)
            for item in ([stored] if stored else []) + old_legacy:
                self._store.read_item_pages([item], {(item.key, at) for at in item.cells if at in in_scope})
                for b in item.buckets():
                    if b.start_s in in_scope:
                        before[b.start_s].merge(b.state)
            new_cells = {at: st for at, st in (stored.cells.items() if stored else ()) if at not in in_scope}
            pending = {at: st for at, st in (stored.pending.items() if stored else ()) if at not in in_scope}
            for at in in_scope:
                state = BucketState()
                if at in cells:
                    state.merge(cells[at])
                if stored and at in stored.pending:
                    state.merge(stored.pending[at])
                if state.count or state.values or state.uniques:
                    new_cells[at] = state
            changed = {at for at in in_scope if not _same(before.get(at, BucketState()), new_cells.get(at, BucketState()))}
            if not changed and not old_legacy and not (stored and any(at in stored.pending for at in in_scope)):
                with lock:
                    report.items_unchanged += 1
                return set()
            pages = {at: p for at, p in (stored.pages.items() if stored else ()) if at not in in_scope}
            new = UsageItem(key, new_cells, dict(stored.markers) if stored else {},
                            (stored.version or 0) + 1 if stored else 1, pages, pending=pending, rebuilt=rebuild.id)
            version = stored.version if stored else None
            ok = (self._store.replace_usage_items(new, version, old_legacy) if old_legacy
                  else self._store.put_usage_item(new, version))
            if ok:
                with lock:
                    report.items_written += 1
                return changed
        raise Conflict(f"usage item {key} kept changing; re-run the rebuild (it resumes)", field="meter")


def _same(a: BucketState, b: BucketState) -> bool:
    return (a.count, a.sum, a.max, a.min, a.latest, a.uniques, a.values) == \
        (b.count, b.sum, b.max, b.min, b.latest, b.uniques, b.values)
