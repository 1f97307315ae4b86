"""Billing runs that fan out through the close queue (issue 9; docs/decisions.md "Billing runs fan
out through SQS").

A run is a record (``RUN#<id>``, adapters/dynamo_runs.py). The **dispatcher** creates it
idempotently, waits once for the usage watermark, pages through the due customers and the
progressive ones and sends one message per customer task (``close`` / ``threshold``). The
**worker** (functions/close_worker.py) handles one message: ``BillingService.close_customer``
(idempotent through the customer's ``closed_through`` mark and the invoice's deterministic id)
and records the task's outcome with the run's counters in one transaction, so a redelivered
message changes nothing. A customer whose usage is not aggregated yet is put back on the queue
with a delay and counted ``waiting``; after ``max_wait_attempts`` it is given up (its draft stays
``waiting_for_usage``; a later run finalizes it). A run is **finished** when
``queued == closed + failed + given_up``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from meterbill.domain.errors import DomainError
from meterbill.domain.instants import iso, parse_instant
from meterbill.ports import Clock, RunStore, UsageLag, UsageWatermark, WorkQueue
from meterbill.services.billing import BillingService, RunSummary, describe
from meterbill.services.errors import Conflict, InvalidField, NotFound

log = logging.getLogger(__name__)
TASKS = ("close", "threshold")
COUNTERS = ("queued", "closed", "waiting", "failed", "given_up")
PAGE = 100                   # customers per due_customers page (10 SendMessageBatch calls)
DISPATCH_MARGIN_S = 60.0     # a dispatcher with less time left hands the rest to a continuation message
LAG_RECHECK_S = 5.0          # a worker re-reads the usage watermark at most this often per run
LISTED = 100                 # failures / waiting customers shown with a run


class RetryLater(Exception):
    """The message must come back later (its customer waits for usage): a batch item failure."""


def _no_deadline() -> float:
    return float("inf")


def _task_done(run: Mapping[str, Any]) -> bool:
    return run.get("status") == "running" and int(run["queued"]) == \
        int(run["closed"]) + int(run["failed"]) + int(run["given_up"])


class BillingRunService:
    def __init__(self, store: RunStore, billing: BillingService, queue: WorkQueue, clock: Clock,
                 watermark: UsageWatermark | None = None, *, wall: Callable[[], float] = time.time,
                 wait_retry_s: int = 60, max_wait_attempts: int = 5, max_receives: int = 10,
                 on_run_finished: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._store = store
        self._billing = billing
        self._queue = queue
        self._clock = clock
        self._watermark = watermark
        self._wall = wall
        self._wait_retry_s = wait_retry_s
        self._max_wait_attempts = max_wait_attempts
        self._max_receives = max_receives
        # Called once when a run finishes (its invoices are numbered by then). Nothing to do yet.
        self.on_run_finished = on_run_finished or (lambda run: None)
        self._lags: dict[str, tuple[float, UsageLag | None]] = {}

    # -- starting a run -------------------------------------------------------------------
    def request(self, as_of: datetime | None, idempotency_key: str | None = None) -> dict[str, Any]:
        """On demand (POST /v1/billing-runs): store the run and hand its dispatch to the queue.
        The same ``Idempotency-Key`` names the same run."""
        now = self._clock()
        if as_of is not None and as_of > now:
            raise InvalidField("as_of", "must not be in the future: only periods that have ended can close")
        if idempotency_key is not None:
            run_id = "run_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:26]
        else:
            run_id = "run_" + uuid.uuid4().hex[:26]
        run, created = self._create(run_id, as_of or now, "api")
        if not created and as_of is not None and run["as_of"] != iso(as_of):
            raise Conflict(f"this Idempotency-Key started a run as of {run['as_of']}", field="Idempotency-Key")
        if run["status"] == "dispatching":   # also a retried request whose first send may have failed
            self._queue.send([{"kind": "dispatch", "run": run_id}])
        return self.view(run_id)

    def scheduled(self, scheduled_time: datetime | None, time_left: Callable[[], float] = _no_deadline
                  ) -> dict[str, Any]:
        """The schedule's tick: its run id comes from the scheduled time, so a retried invocation
        resumes the same run; the dispatch happens here (a continuation message if time runs out)."""
        now = self._clock()
        if scheduled_time is None:
            run_id, as_of = "run_" + uuid.uuid4().hex[:26], now
        else:
            as_of = min(scheduled_time, now)
            run_id = "sched_" + scheduled_time.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self._create(run_id, as_of, "schedule")
        if not self.dispatch(run_id, time_left):
            self._queue.send([{"kind": "dispatch", "run": run_id}])
        return self.view(run_id)

    def _create(self, run_id: str, as_of: datetime, trigger: str) -> tuple[dict[str, Any], bool]:
        return self._store.create_run({"id": run_id, "as_of": iso(as_of), "started_at": iso(self._clock()),
                                       "trigger": trigger, "status": "dispatching", "dispatch": "close|"})

    # -- the dispatcher -------------------------------------------------------------------
    def dispatch(self, run_id: str, time_left: Callable[[], float] = _no_deadline) -> bool:
        """Send the run's customer tasks, page by page, from where the last recorded page ended.
        True when every page is sent (or another dispatcher took over); False when time ran out."""
        run = self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"billing run '{run_id}' does not exist", field="id")
        if run["status"] != "dispatching":
            return True
        if "usage_wait_started_at" not in run:
            run.update(self._wait_for_usage(run_id))
        sent: set[tuple[str, str]] = set()   # a customer whose due key moved within this dispatch
        while True:
            phase, _, cursor = str(run["dispatch"]).partition("|")
            if phase == "close":
                due, nxt = self._store.due_customers(run["as_of"], PAGE, cursor or None)
                ids = [str(c["id"]) for c in due]
            else:
                ids, nxt = self._store.progressive_customers(PAGE, cursor or None)
            tasks = [(phase, c) for c in ids if (phase, c) not in sent]
            self._queue.send([{"kind": kind, "run": run_id, "customer": c, "as_of": run["as_of"]} for kind, c in tasks])
            sent.update(tasks)
            new = f"{phase}|{nxt}" if nxt else ("threshold|" if phase == "close" else "done|")
            last = new == "done|"
            if not self._store.advance_dispatch(run_id, run["dispatch"], new, len(tasks),
                                                "running" if last else None):
                log.warning("billing run %s: another dispatcher moved on; this one stops", run_id)
                return True
            run["dispatch"] = new
            if last:
                self._maybe_finish(run_id)
                return True
            if time_left() < DISPATCH_MARGIN_S:
                return False

    def _wait_for_usage(self, run_id: str) -> dict[str, Any]:
        """Once per run: wait (bounded) until aggregation has applied every event accepted before
        now. Workers re-check against this cutoff only if it did not catch up."""
        cutoff = self._wall()
        lag = self._watermark.wait() if self._watermark is not None else None
        fields: dict[str, Any] = {"usage_wait_started_at": iso(datetime.fromtimestamp(cutoff, timezone.utc)),
                                  "usage_cutoff_ms": int(cutoff * 1000)}
        if lag is not None:
            fields["usage_lag"] = lag.as_dict()
        self._store.set_run_fields(run_id, fields, "dispatching")
        return fields

    # -- the worker -----------------------------------------------------------------------
    def handle(self, message: Mapping[str, Any], receipt: str | None = None, receive_count: int = 1,
               time_left: Callable[[], float] = _no_deadline) -> str:
        """One close-queue message. Returns what became of it; raises RetryLater (its customer
        waits for usage) or any transient error for SQS to deliver it again."""
        kind = message.get("kind")
        if kind == "dispatch":
            if not self.dispatch(str(message["run"]), time_left):
                self._queue.send([{"kind": "dispatch", "run": message["run"]}])
            return "dispatched"
        if kind not in TASKS or not isinstance(message.get("customer"), str):
            log.error("close queue: unknown message dropped: %s", dict(message))
            return "ignored"
        run_id, customer = str(message["run"]), str(message["customer"])
        run = self._store.get_run(run_id)
        if run is None:
            log.error("close queue: message for unknown run %s dropped", run_id)
            return "ignored"
        previous = self._store.get_outcome(run_id, kind, customer)
        if previous is not None and (previous["status"] != "waiting" or previous.get("given_up")):
            return str(previous["status"])     # redelivered: already recorded, nothing to do
        outcome = self._close(run, kind, customer, previous, receive_count)
        counts = {outcome["status"]: 1, "given_up": 1 if outcome.get("given_up") else 0}
        if previous is not None:
            counts[previous["status"]] = counts.get(previous["status"], 0) - 1
        if self._store.record_outcome(run_id, outcome, previous, counts):
            self._maybe_finish(run_id)
        if outcome["status"] == "waiting" and not outcome.get("given_up"):
            if receipt is not None:
                self._queue.delay(receipt, self._wait_retry_s)
            raise RetryLater(f"customer {customer}: waiting for usage (attempt {outcome['attempts']})")
        return str(outcome["status"])

    def _close(self, run: Mapping[str, Any], kind: str, customer: str, previous: Mapping[str, Any] | None,
               receive_count: int) -> dict[str, Any]:
        as_of = parse_instant(run["as_of"], "as_of")
        summary = RunSummary(as_of=run["as_of"])
        summary.usage_lag = self._lag(run)
        attempts = int(previous["attempts"]) + 1 if previous is not None else 1
        outcome: dict[str, Any] = {"kind": kind, "customer": customer, "attempts": attempts,
                                   "updated_at": iso(self._clock())}
        try:
            self._billing.close_customer(customer, as_of, summary)
            if kind == "threshold":
                self._billing.bill_threshold(customer, as_of, summary)
        except (DomainError, NotFound) as exc:         # the customer's data: retrying cannot help
            log.exception("billing run %s: customer %s failed", run["id"], customer)
            return {**outcome, "status": "failed", "reason": describe(exc)}
        except Exception as exc:
            if receive_count < self._max_receives:
                raise                                  # transient: SQS delivers it again
            log.exception("billing run %s: customer %s failed on its last delivery", run["id"], customer)
            return {**outcome, "status": "failed", "reason": f"gave up after {receive_count} deliveries: {describe(exc)}"}
        outcome.update(invoices=summary.invoices, drafts=summary.drafts)
        if not summary.waiting:
            return {**outcome, "status": "closed"}
        lag = summary.usage_lag.as_dict() if summary.usage_lag is not None else None
        given_up = attempts >= self._max_wait_attempts or receive_count >= self._max_receives - 1
        return {**outcome, "status": "waiting", "given_up": given_up, "usage_lag": lag}

    def _lag(self, run: Mapping[str, Any]) -> UsageLag | None:
        """The dispatcher found aggregation behind: is it still, for events before its cutoff?"""
        if "usage_lag" not in run or self._watermark is None:
            return None
        now = self._wall()
        cached = self._lags.get(str(run["id"]))
        if cached is None or now - cached[0] >= LAG_RECHECK_S:
            cached = (now, self._watermark.check(int(run["usage_cutoff_ms"]) / 1000))
            self._lags[str(run["id"])] = cached
        return cached[1]

    def _maybe_finish(self, run_id: str) -> None:
        run = self._store.get_run(run_id)
        if run is None or not _task_done(run):
            return
        # A finished run's invoices are numbered (final): number what is waiting before saying so.
        self._number_quietly()
        if self._store.finish_run(run_id, {c: int(run[c]) for c in COUNTERS}, iso(self._clock())):
            self.on_run_finished(run)

    def number_invoices(self) -> int:
        """The sequencer after a batch of closes (docs/decisions.md, "Invoice numbers at scale").
        Never fails the batch: what it could not number stays queued for the next pass."""
        return self._number_quietly()

    def _number_quietly(self) -> int:
        try:
            return self._billing.number_invoices()
        except Exception:  # noqa: BLE001 - the closes are committed; any later pass numbers them
            log.exception("numbering invoices failed; the next pass numbers them")
            return 0

    # -- reading runs ---------------------------------------------------------------------
    def view(self, run_id: str) -> dict[str, Any]:
        """The run: counters, when it finished, its failed customers (with reasons) and the
        customers still waiting for usage (the first LISTED of each)."""
        run = self._store.get_run(run_id)
        if run is None:
            raise NotFound(f"billing run '{run_id}' does not exist", field="id")
        failures, _ = self._store.run_outcomes(run_id, "failed", LISTED, None)
        waiting, _ = self._store.run_outcomes(run_id, "waiting", LISTED, None)
        return {**public(run),
                "failures": [{"customer": o["customer"], "task": o["kind"], "reason": o.get("reason", "")}
                             for o in failures],
                "waiting_customers": [{"customer": o["customer"], "task": o["kind"], "attempts": o["attempts"],
                                       "given_up": bool(o.get("given_up")), "drafts": o.get("drafts", [])}
                                      for o in waiting]}

    def list(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        runs, nxt = self._store.list_runs(limit, cursor)
        return [public(r) for r in runs], nxt


def public(run: Mapping[str, Any]) -> dict[str, Any]:
    doc = {k: run[k] for k in ("id", "status", "trigger", "as_of", "started_at", "finished_at",
                               "usage_wait_started_at", "usage_lag") if k in run}
    doc.update({c: int(run.get(c, 0)) for c in COUNTERS})
    doc.setdefault("finished_at", None)
    return doc
