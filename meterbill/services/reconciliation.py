"""Reconciliation (`meterbill reconcile`, POST /v1/reconciliations, the daily scheduled run):
raw events against stored aggregates, aggregates against invoiced lines, each invoice's own
arithmetic, invoices against payments, and each enabled integration's sync state, for the
invoices whose period starts in one month (docs/decisions.md, "Audit and reconciliation").

The comparisons are the pure ``domain/reconciliation.py``; this reads what they compare:

- every customer's invoices of the month (one Query each), their late-usage markers, their
  re-rating by the rating code itself (``BillingService.rerate``: the buckets of the period, as a
  close reads them), and each invoice's sync records (one GetItem per integration);
- for a sample of customers (or the one named), a recount of the raw events by the aggregator's own
  rule (``RebuildService.count``) against the stored buckets. The events table has no index by
  customer or time: the recount is a Scan of the whole table (up to 100 customers per pass), billed
  for every item whatever the filter keeps, so it is bounded by ``max_read_units`` — past it the
  recount stops and says so, and compares nothing rather than something half-read.
"""

from __future__ import annotations

import random
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Protocol

from meterbill.domain import reconciliation as rec
from meterbill.domain.events import Event
from meterbill.domain.instants import iso, parse_instant
from meterbill.domain.meters import BucketState, bucket_range, bucket_start, group_key
from meterbill.domain.rebuilds import Rebuild
from meterbill.ports import BillingStore, Clock, UsageWatermark
from meterbill.services.billing import BillingService
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import InvalidField, NotFound
from meterbill.services.rebuild import END_MAX, RebuildReport, RebuildService

DEFAULT_SAMPLE = 10
MAX_SAMPLE = 100                  # one Scan pass filters at most 100 customers
MAX_READ_UNITS = 500_000.0        # ~2 GB read strongly consistently; see docs/performance.md
MAX_FINDINGS_STORED = 10_000      # the summary counts every finding; GET pages the first ones
PERIOD_PATTERN = r"(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])"   # 1970-01 to 2999-12
PERIOD = re.compile(PERIOD_PATTERN)
PAYABLE = frozenset({"final", "paid", "void", "uncollectible"})   # numbered: pushed to the integrations
Progress = Callable[[str, int, int], None]


class RawEventRecount(Protocol):
    def events_between(self, customers: Sequence[str], start_ms: int, end_ms: int, segment: int = ...,
                       segments: int = ...) -> Iterator[tuple[list[tuple[Event, int]], int, int]]: ...


class ReconcileStore(BillingStore, Protocol):
    def get_sync(self, invoice_id: str, integration: str, action_key: str = ...) -> dict[str, Any] | None: ...


class ReconciliationRecords(Protocol):
    def put_reconciliation(self, doc: dict[str, Any]) -> None: ...
    def get_reconciliation(self, recon_id: str) -> dict[str, Any] | None: ...
    def put_findings(self, recon_id: str, findings: Sequence[dict[str, Any]]) -> int: ...
    def findings(self, recon_id: str, pages: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]: ...


def month(period: str) -> tuple[datetime, datetime]:
    m = PERIOD.fullmatch(period) if isinstance(period, str) else None
    if m is None:
        raise InvalidField("period", "must be a month as YYYY-MM (1970-01 to 2999-12), e.g. 2026-10")
    y, mo = int(m[1]), int(m[2])
    return (datetime(y, mo, 1, tzinfo=timezone.utc),
            datetime(y + mo // 12, mo % 12 + 1, 1, tzinfo=timezone.utc))


def every(listing: Callable[[str | None], tuple[list[dict[str, Any]], str | None]]) -> list[dict[str, Any]]:
    """Every row of a paged listing."""
    out, cursor = listing(None)
    while cursor:
        rows, cursor = listing(cursor)
        out += rows
    return out


def payments_of(invoice: dict[str, Any]) -> list[rec.Payment]:
    """The payment evidence kept today: a paid invoice's reference to what paid it (the Stripe
    webhook's invoice / event id, or the reference given to mark-paid). Payment records
    (``POST /v1/invoices/{id}/payments``, in progress) slot in here."""
    ref = invoice.get("paid_reference")
    if invoice.get("status") != "paid" or not ref:
        return []
    amount = invoice.get("amount_paid")
    return [rec.Payment(str(ref), invoice["id"], None if amount is None else Decimal(str(amount)),
                        str(invoice.get("paid_source") or "manual"))]


@dataclass(slots=True)
class Recount:
    customers: list[str] = field(default_factory=list)
    events_scanned: int = 0
    read_units: float = 0.0
    complete: bool = True
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"customers": self.customers, "events_scanned": self.events_scanned,
                "read_units": Decimal(str(round(self.read_units, 1))), "complete": self.complete, "skipped": self.skipped}


class ReconciliationService:
    def __init__(self, store: ReconcileStore, records: ReconciliationRecords, events: RawEventRecount,
                 catalog: CatalogService, billing: BillingService, clock: Clock, integrations: tuple[str, ...],
                 watermark: UsageWatermark | None = None, launch: Callable[[str], None] | None = None) -> None:
        self._launch = launch     # runs a requested reconciliation elsewhere (AWS: the reconcile function)
        self._store = store
        self._records = records
        self._events = events
        self._catalog = catalog
        self._billing = billing
        self._clock = clock
        self._integrations = integrations
        self._watermark = watermark

    def request(self, period: str, customer: str | None = None, sample: int = DEFAULT_SAMPLE) -> dict[str, Any]:
        """POST /v1/reconciliations: the request stored (``queued``) and handed to the reconcile
        function (an asynchronous invocation: a Scan outlasts API Gateway's 30 s); without one
        (tests, the local stack) it runs here, before the answer."""
        self._check(period, customer, sample)
        recon_id = self._new_id(period)
        doc: dict[str, Any] = {"id": recon_id, "period": period, "customer": customer, "sample": sample,
                               "status": "queued", "requested_at": iso(self._clock())}
        self._records.put_reconciliation(doc)
        if self._launch is None:
            return self.run(period, customer, sample, recon_id=recon_id)
        self._launch(recon_id)
        return doc

    def run_requested(self, recon_id: str) -> dict[str, Any]:
        """The reconcile function's asynchronous invocation: run a stored request (a finished one
        is not run again: Lambda retries an asynchronous invocation that failed)."""
        doc = self._records.get_reconciliation(recon_id)
        if doc is None:
            raise NotFound(f"reconciliation '{recon_id}' does not exist", field="id")
        if doc["status"] == "finished":
            return doc
        return self.run(doc["period"], doc.get("customer"), int(doc["sample"]), recon_id=recon_id)

    def scheduled(self, at: datetime | None = None) -> dict[str, Any]:
        """The daily run: the month before ``at`` (the scheduler's tick), a sample of customers."""
        at = at or self._clock()
        first = datetime(at.year, at.month, 1, tzinfo=timezone.utc)
        previous = datetime(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1, tzinfo=timezone.utc)
        return self.run(previous.strftime("%Y-%m"))

    def _check(self, period: str, customer: str | None, sample: int) -> None:
        month(period)
        if type(sample) is not int or not 1 <= sample <= MAX_SAMPLE:
            raise InvalidField("sample", f"must be 1 to {MAX_SAMPLE} customers")
        if customer is not None:
            self._customers(customer)

    def _new_id(self, period: str) -> str:
        return f"rc_{period.replace('-', '')}_{int(self._clock().timestamp() * 1000)}_{secrets.token_hex(3)}"

    def run(self, period: str, customer: str | None = None, sample: int = DEFAULT_SAMPLE,
            max_read_units: float = MAX_READ_UNITS, progress: Progress | None = None,
            recon_id: str | None = None) -> dict[str, Any]:
        self._check(period, customer, sample)
        recon_id = recon_id or self._new_id(period)
        try:
            return self._run(recon_id, period, customer, sample, max_read_units, progress or (lambda *_: None))
        except Exception as exc:
            self._records.put_reconciliation({"id": recon_id, "period": period, "customer": customer,
                                              "sample": sample, "status": "failed",
                                              "error": f"{type(exc).__name__}: {exc}"[:1000],
                                              "finished_at": iso(self._clock())})
            raise

    def _run(self, recon_id: str, period: str, customer: str | None, sample: int, max_read_units: float,
             tell: Progress) -> dict[str, Any]:
        start, end = month(period)
        cutoff = self._clock()
        customers = self._customers(customer)
        findings: list[rec.Finding] = []
        windows: dict[str, tuple[datetime, datetime]] = {}
        checked = 0
        for i, c in enumerate(customers, 1):
            invoices = [inv for inv in self._invoices(c["id"]) if start <= parse_instant(
                inv["period"]["start"], "start") < end and inv.get("status") != "draft"]
            checked += len(invoices)
            findings += self._check_invoices(c, invoices)
            own = [inv["period"] for inv in invoices if inv.get("kind", "period") == "period"]
            windows[c["id"]] = ((min(parse_instant(p["start"], "start") for p in own),
                                 max(parse_instant(p["end"], "end") for p in own)) if own else (start, end))
            tell("invoices", i, len(customers))
        chosen = [customer] if customer else sorted(random.Random(recon_id).sample(
            sorted(windows), min(sample, len(windows))))
        recount = Recount(chosen)
        lag = self._watermark.wait() if self._watermark is not None else None
        if lag is not None:
            recount.complete, recount.skipped = False, f"aggregation is behind ({lag.age_s:.0f} s): nothing recounted"
        elif chosen:
            findings += self._recount(chosen, {c["id"]: c for c in customers}, windows, cutoff, recount,
                                      max_read_units, tell)
        doc = {"id": recon_id, "period": period, "customer": customer, "sample": sample,
               "started_at": iso(cutoff), "finished_at": iso(self._clock()), "status": "finished",
               "customers_checked": len(customers), "invoices_checked": checked,
               "integrations": list(self._integrations), "recount": recount.as_dict(),
               **rec.summary(findings), "findings_stored": min(len(findings), MAX_FINDINGS_STORED)}
        doc["pages"] = self._records.put_findings(recon_id, [f.as_dict() for f in findings[:MAX_FINDINGS_STORED]])
        self._records.put_reconciliation(doc)
        return doc

    def view(self, recon_id: str, cursor: str | None = None) -> dict[str, Any]:
        """The run and one page of its findings (up to 100, in the order found)."""
        doc = self._records.get_reconciliation(recon_id)
        if doc is None:
            raise NotFound(f"reconciliation '{recon_id}' does not exist", field="id")
        found, next_cursor = self._records.findings(recon_id, int(doc.get("pages", 0)), cursor)
        return {**doc, "findings": found, "next_cursor": next_cursor}

    # -- invoices: arithmetic, re-rating, payments, sync ----------------------------------------
    def _customers(self, customer: str | None) -> list[dict[str, Any]]:
        if customer is not None:
            found = self._store.get_customer(customer)
            if found is None:
                raise NotFound(f"customer '{customer}' does not exist", field="customer")
            return [found]
        return every(lambda cursor: self._store.list_customers(100, cursor))

    def _invoices(self, customer_id: str) -> list[dict[str, Any]]:
        return every(lambda cursor: self._store.list_invoices(customer_id, 100, cursor))

    def _check_invoices(self, customer: dict[str, Any], invoices: list[dict[str, Any]]) -> list[rec.Finding]:
        out: list[rec.Finding] = []
        late = {m["sk"][5:] for m in self._store.customer_items("late", customer["id"])} if invoices else set()
        for inv in invoices:
            out += rec.check_arithmetic(inv)
            if inv.get("kind", "period") == "period" and inv.get("status") != "void":
                rated = self._billing.rerate(customer, inv)
                if rated is not None:
                    lines = [rec.LineFigures(ln.kind, ln.meter, ln.description, ln.quantity, ln.amount)
                             for ln in rated.lines]
                    out += rec.compare_lines(inv, lines, inv["period"]["start"] in late)
            out += rec.compare_payments(inv, payments_of(inv))
            if inv.get("status") in PAYABLE:
                for name in self._integrations:
                    out += rec.compare_sync(inv, name, self._store.get_sync(inv["id"], name))
        return out

    # -- raw events against stored buckets ------------------------------------------------------
    def _recount(self, chosen: list[str], customers: dict[str, dict[str, Any]],
                 windows: dict[str, tuple[datetime, datetime]], cutoff: datetime, recount: Recount,
                 max_read_units: float, tell: Progress) -> list[rec.Finding]:
        ranges = {c: bucket_range(*windows[c], parse_instant(customers[c]["started_at"], "started_at"))
                  for c in chosen}
        by_type = self._catalog.meters_by_type(fresh=True)
        counted: dict[tuple[str, str], dict[rec.CellKey, rec.Recount]] = defaultdict(lambda: defaultdict(rec.Recount))
        cutoff_ms = int(cutoff.timestamp() * 1000) + 1   # accepted at or before the cutoff
        lo = min(r[0] for r in ranges.values()) * 1000
        hi = max(r[1] for r in ranges.values()) * 1000
        for events, scanned, size in self._events.events_between(chosen, lo, hi):
            recount.events_scanned += scanned
            recount.read_units += size / 4096
            tell("recount", recount.events_scanned, 0)
            for event, accepted_ms in events:
                if event.customer in ranges:
                    self._count(event, accepted_ms, cutoff_ms, ranges[event.customer], by_type, counted)
            if recount.read_units > max_read_units:
                recount.complete = False
                recount.skipped = (f"the Scan passed {max_read_units:.0f} read units: nothing compared "
                                   "(reconcile one customer with --customer, or raise the bound)")
                return []
        out: list[rec.Finding] = []
        for c in chosen:
            stored: dict[str, dict[rec.CellKey, BucketState]] = defaultdict(dict)
            for b in self._store.query_buckets(c, *ranges[c]):
                stored[b.meter][(b.start_s, b.group)] = b.state
            window = f"{iso(windows[c][0])}/{iso(windows[c][1])}"
            for meter in sorted({m for (cc, m) in counted if cc == c} | set(stored)):
                out += rec.compare_usage(c, meter, counted.get((c, meter), {}), stored.get(meter, {}), window)
        return out

    @staticmethod
    def _count(event: Event, accepted_ms: int, cutoff_ms: int, window: tuple[int, int],
               by_type: dict[str, list[Any]], counted: dict[tuple[str, str], dict[rec.CellKey, rec.Recount]]) -> None:
        """The aggregator's rule (a usage rebuild's ``count``): once for the events accepted before
        the cutoff, once including those accepted since."""
        cell = bucket_start(event.ts_ms)
        if not window[0] <= cell < window[1]:
            return
        for meter in by_type.get(event.type, ()):
            before: dict[Any, dict[int, BucketState]] = defaultdict(dict)
            since: dict[Any, dict[int, BucketState]] = defaultdict(dict)
            everything = Rebuild("", meter.code, event.customer, 0, END_MAX, END_MAX * 1000, False)
            report = RebuildReport(everything)
            RebuildService.count(replace(everything, mark_ms=cutoff_ms), meter, event, accepted_ms, before, report)
            RebuildService.count(everything, meter, event, accepted_ms, since, report)
            if not since:
                continue
            bucket = counted[(event.customer, meter.code)][(cell, group_key(meter, event))]
            for states, into in ((before, bucket.before), (since, bucket.including_later)):
                for cells in states.values():
                    into.merge(cells[cell])
            if len(bucket.events) < rec.EVENT_SAMPLE:
                bucket.events.append(event.id)
