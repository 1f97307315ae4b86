"""Contention on the gapless invoice number: 8 and 32 workers close customers at once.

Each worker is a thread with the real `BillingService.close_customer` (the unit of work of one
close-queue message) against moto's server over HTTP, so requests of different workers
interleave as on AWS. Counted: every `Conflict` (a transaction cancelled because the counter,
the customer or the invoice moved) and every numbering pass, per invoice numbered. The figure
is moto's interleaving, not AWS latency: it shows whether the counter is a point of contention
at all (see docs/decisions.md, "Invoice numbers at scale").
"""

from __future__ import annotations

import os
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any

from bench import report
from bench import workload as w

LEVELS = (8, 32)
CUSTOMERS = int(os.environ.get("BENCH_NUMBERING_CUSTOMERS", "320"))
NOW = datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc)       # November has ended for everyone
CONFLICT_METHODS = ("commit_invoice", "number_invoices")


def run() -> None:
    from meterbill.local import stack

    port = stack.free_port()
    moto = stack.start_moto(port)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        stack.prepare_environment(endpoint)
        for level in LEVELS:
            _level(endpoint, level)
    finally:
        stack.stop_process(moto)


def _container(endpoint: str, suffix: str) -> Any:
    import boto3

    from infra.template import create_tables
    from meterbill.bootstrap import bootstrap, dynamodb_client
    from meterbill.config import Settings

    settings = Settings(events_table=f"events-{suffix}", billing_table=f"billing-{suffix}", dynamodb_endpoint=endpoint,
                        usage_wait_s=0, stream_settle_s=0)
    create_tables(boto3.client("dynamodb", endpoint_url=endpoint, region_name=settings.region),
                  {"EventsTable": settings.events_table, "BillingTable": settings.billing_table})
    return bootstrap(settings, client=dynamodb_client(settings), clock=lambda: NOW, cache_ttl_s=60)


class _Counting:
    """Counts calls and Conflicts of the store's commit and numbering writes (a measurement shim
    around the real adapter, not a fake)."""

    def __init__(self, store: Any) -> None:
        self.calls = dict.fromkeys(CONFLICT_METHODS, 0)
        self.conflicts = dict.fromkeys(CONFLICT_METHODS, 0)
        self._lock = threading.Lock()
        for name in CONFLICT_METHODS:
            setattr(store, name, self._wrap(name, getattr(store, name)))

    def _wrap(self, name: str, fn: Any) -> Any:
        from meterbill.services.errors import Conflict

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            try:
                return fn(*args, **kwargs)
            except Conflict:
                with self._lock:
                    self.conflicts[name] += 1
                raise
        return counted


def _level(endpoint: str, workers: int) -> None:
    from meterbill.services.billing import RunSummary

    c = _container(endpoint, f"n{workers}")
    c.catalog.put_meter("llm_tokens", w.METERS["llm_tokens"])
    c.catalog.put_plan("bench_pro", {"currency": "USD", "interval": "month", "base_fee": "49.00", "charges": [
        {"meter": "llm_tokens", "model": "per_unit", "unit_amount": "0.00002"}]})
    who = w.customers(CUSTOMERS)
    for cid in who:
        c.catalog.put_customer(cid, {"name": cid, "plan": "bench_pro", "started_at": "2026-11-01T00:00:00Z",
                                     "billing_anchor": "2026-11-01T00:00:00Z"})
    counting = _Counting(c.billing_store)
    todo: queue.Queue[str] = queue.Queue()
    for cid in who:
        todo.put(cid)
    summaries = [RunSummary(as_of=NOW.isoformat()) for _ in range(workers)]
    errors: list[BaseException] = []
    gave_up: list[str] = []

    def work(summary: RunSummary) -> None:
        from meterbill.services.errors import Conflict

        try:
            while True:
                try:
                    cid = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    c.billing.close_customer(cid, NOW, summary)
                except Conflict:  # gave up after its retries: the queue would redeliver it
                    gave_up.append(cid)
                    todo.put(cid)
                c.billing.number_invoices()  # as a close worker does after each message batch
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(s,)) for s in summaries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"numbering bench, {workers} workers: {errors[0]!r}")
    invoices = sum(len(s.invoices) for s in summaries)
    numbers = sorted(int(i["number"].split("-")[-1]) for i in _all_invoices(c))
    if invoices != CUSTOMERS or numbers != list(range(1, CUSTOMERS + 1)):
        raise RuntimeError(f"numbering bench: {invoices} invoices, numbers not 1..{CUSTOMERS}: {numbers[:5]}…")
    conflicts = sum(counting.conflicts.values())
    report(f"invoice_number_conflicts_per_invoice_{workers}_workers", round(conflicts / invoices, 3),
           "conflicts", note=f"{invoices} invoices by {workers} concurrent closers on moto's server, each numbering "
                             f"after every close; commits {counting.calls['commit_invoice']} "
                             f"({counting.conflicts['commit_invoice']} conflicts), numbering transactions "
                             f"{counting.calls['number_invoices']} ({counting.conflicts['number_invoices']} conflicts); "
                             f"{len(gave_up)} closes gave up; {wall:.1f} s; numbers gapless 1..{invoices}")


def _all_invoices(c: Any) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page, cursor = c.billing_store.list_invoices(None, 100, cursor)
        out += [i for i in page if i.get("number")]
        if not cursor:
            return out
