"""Invoice numbers at scale (issue 9): closes commit invoices without touching the counter; the
sequencer numbers them afterwards — gapless, unique, in commit order — however many closers and
numbering passes run at once, and whatever crashes in between."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from meterbill.services.billing import RunSummary
from meterbill.services.errors import Conflict
from tests.conftest import standard_plan

NOV = datetime(2026, 11, 1, tzinfo=timezone.utc)


def customers(container: Any, n: int) -> list[str]:
    standard_plan(container)
    ids = [f"c{i:03d}" for i in range(n)]
    for cid in ids:
        container.catalog.put_customer(cid, {"name": cid, "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                             "billing_anchor": "2026-10-01T00:00:00Z"})
    return ids


def all_invoices(container: Any) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page, cursor = container.billing_store.list_invoices(None, 100, cursor)
        out += page
        if not cursor:
            return out


def numbers(container: Any) -> list[int]:
    return sorted(int(i["number"][2:]) for i in all_invoices(container) if i.get("number"))


def test_a_close_commits_a_finalizing_invoice_that_the_sequencer_numbers(container: Any) -> None:
    customers(container, 1)
    summary = RunSummary(as_of="2026-11-01T00:00:00Z")
    container.billing.close_customer("c000", NOV, summary)
    (inv,) = all_invoices(container)
    assert (inv["status"], inv.get("number"), summary.invoices) == ("finalizing", None, [inv["id"]])
    with pytest.raises(Conflict):  # nothing acts on an invoice before it has its number
        container.billing.transition(inv["id"], "mark-paid")

    assert container.billing.number_invoices() == 1
    (inv,) = all_invoices(container)
    assert (inv["status"], inv["number"], inv["numbered_at"]) == ("final", "T-000001", "2026-11-05T12:00:00Z")
    assert container.billing.number_invoices() == 0        # nothing waits any more
    assert container.billing.transition(inv["id"], "mark-paid")["status"] == "paid"


def test_numbers_follow_commit_order_across_batches(container: Any, clock: Any) -> None:
    ids = customers(container, 60)                         # more than one numbering transaction
    summary = RunSummary(as_of="2026-11-01T00:00:00Z")
    for cid in ids:
        container.billing.close_customer(cid, NOV, summary)
        clock.advance(seconds=1)
    assert container.billing.number_invoices() == 60
    by_number = sorted(all_invoices(container), key=lambda i: i["number"])
    assert [i["customer_id"] for i in by_number] == ids
    assert numbers(container) == list(range(1, 61))


def test_concurrent_closers_and_numbering_passes_leave_numbers_gapless(container: Any) -> None:
    """8 closers, each numbering after every close (as a close worker does after its batch):
    the closes never conflict on the counter; the numbering passes may, and lose nothing."""
    ids = customers(container, 40)
    todo = list(ids)
    lock = threading.Lock()
    failures: list[BaseException] = []
    summaries = [RunSummary(as_of="2026-11-01T00:00:00Z") for _ in range(8)]
    conflicts = {"commit": 0}
    commit = container.billing_store.commit_invoice

    def counted_commit(*args: Any, **kwargs: Any) -> Any:
        try:
            return commit(*args, **kwargs)
        except Conflict:
            with lock:
                conflicts["commit"] += 1
            raise

    container.billing_store.commit_invoice = counted_commit

    def closer(summary: RunSummary) -> None:
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    cid = todo.pop()
                container.billing.close_customer(cid, NOV, summary)
                container.billing.number_invoices()
        except BaseException as exc:  # noqa: BLE001 - asserted below
            failures.append(exc)

    threads = [threading.Thread(target=closer, args=(s,)) for s in summaries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert conflicts["commit"] == 0
    assert sum(len(s.invoices) for s in summaries) == 40
    assert numbers(container) == list(range(1, 41))
    assert {i["status"] for i in all_invoices(container)} == {"final"}
    assert container.billing_store.invoices_to_number(100) == []


def test_a_crash_between_commit_and_numbering_loses_no_number(container: Any) -> None:
    """A worker dies after its commits: the next numbering pass (any worker, the next run)
    numbers them; a re-run of the close creates nothing twice."""
    ids = customers(container, 3)
    summary = RunSummary(as_of="2026-11-01T00:00:00Z")
    for cid in ids[:2]:
        container.billing.close_customer(cid, NOV, summary)
    # ... crash: no numbering pass ran. The queue redelivers the messages, a run comes later:
    again = container.billing.run(NOV)
    assert len(again.invoices) == 1 and again.invoices[0] not in summary.invoices  # only the third was open
    assert numbers(container) == [1, 2, 3]
    assert len(all_invoices(container)) == 3


def test_a_numbering_pass_that_loses_the_counter_retries_and_numbers_once(container: Any) -> None:
    ids = customers(container, 2)
    summary = RunSummary(as_of="2026-11-01T00:00:00Z")
    for cid in ids:
        container.billing.close_customer(cid, NOV, summary)
    store = container.billing_store
    real = store.number_invoices
    raced = {"done": False}

    def racing(first_seq: int, numbered: Any, at: str) -> None:
        if not raced["done"]:  # another pass numbers the first invoice between our read and our write
            raced["done"] = True
            real(first_seq, numbered[:1], at)
        real(first_seq, numbered, at)

    store.number_invoices = racing
    assert container.billing.number_invoices() == 1                # the other pass numbered the first
    assert numbers(container) == [1, 2]
    assert store.invoices_to_number(10) == []


def test_a_queue_entry_whose_invoice_is_not_waiting_is_dropped(container: Any, ddb: Any) -> None:
    ids = customers(container, 1)
    container.billing.close_customer(ids[0], NOV, RunSummary(as_of="x"))
    ddb.put_item(TableName="t-billing", Item={"pk": {"S": "NUMBERING"}, "sk": {"S": "0000#in_gone"},
                                              "invoice": {"S": "in_gone"}})
    assert container.billing.number_invoices() == 1
    assert numbers(container) == [1]
    assert container.billing_store.invoices_to_number(10) == []
