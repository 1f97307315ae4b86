"""Billing runs fanned out through the close queue (SQS on moto): the dispatcher, the close worker
with partial batch failures, redelivery, killed workers, customers waiting for usage, the run record
and its counters, and the API (202, GET, list)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import boto3
import pytest

from functions.close_worker import process
from meterbill.local.stack import LambdaContext, QueueWorker
from meterbill.services import billing_runs
from tests.conftest import ev, standard_plan

NOV = datetime.fromisoformat("2026-11-01T00:00:00+00:00")


def customers(container: Any, n: int, prefix: str = "c", **extra: Any) -> list[str]:
    standard_plan(container)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    for cid in ids:
        container.catalog.put_customer(cid, {"name": cid, "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                             "billing_anchor": "2026-10-01T00:00:00Z", **extra})
    return ids


def sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def queued_messages(url: str) -> list[dict[str, Any]]:
    """Everything on the queue, received (and left in flight: the test only looks)."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]


def immediate_redelivery(url: str) -> None:
    """A message whose worker died comes back at once (instead of after the visibility timeout)."""
    sqs().set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})


def invoice_numbers(container: Any) -> list[str]:
    items, cursor, out = [], None, []
    while True:
        items, cursor = container.billing_store.list_invoices(None, 100, cursor)
        out += [i for i in items if i.get("number")]
        if not cursor:
            break
    return sorted(i["number"] for i in out)


def assert_each_invoiced_once(container: Any, ids: list[str]) -> None:
    numbers = invoice_numbers(container)
    assert numbers == [f"T-{n:06d}" for n in range(1, len(ids) + 1)]  # gapless, unique
    for cid in ids:
        assert len(container.billing_store.list_invoices(cid, 10, None)[0]) == 1, cid


# -- the dispatcher ------------------------------------------------------------------------
def test_the_dispatcher_enqueues_every_due_and_progressive_customer_once(
        container: Any, close_queue_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_runs, "PAGE", 7)          # several pages
    ids = customers(container, 23)
    container.catalog.put_customer("prog", {"name": "p", "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                            "billing_anchor": "2026-10-01T00:00:00Z", "progressive_threshold": "10"})
    run = container.billing_runs.scheduled(NOV)
    assert run["id"] == "sched_20261101T000000Z" and run["status"] == "running"
    assert run["usage_wait_started_at"] and "usage_lag" not in run      # the watermark was waited for once
    messages = queued_messages(close_queue_url)
    tasks = [(m["kind"], m["customer"]) for m in messages]
    assert sorted(tasks) == sorted([("close", c) for c in [*ids, "prog"]] + [("threshold", "prog")])
    assert {(m["run"], m["as_of"]) for m in messages} == {(run["id"], "2026-11-01T00:00:00Z")}
    assert run["queued"] == len(tasks) == 25
    # the schedule retries the same tick: the same run, nothing sent or counted twice
    again = container.billing_runs.scheduled(NOV)
    assert (again["id"], again["queued"]) == (run["id"], 25) and queued_messages(close_queue_url) == []


def test_a_dispatch_that_died_mid_way_resumes_after_its_last_recorded_page(
        container: Any, close_queue_url: str, close_worker: QueueWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_runs, "PAGE", 5)
    ids = customers(container, 12)
    queue = container.billing_runs._queue
    real_send, calls = queue.send, []

    def dies_on_second_page(messages: list[dict[str, Any]]) -> None:
        calls.append(len(messages))
        if len(calls) == 2:
            raise ConnectionError("the dispatcher's instance died")
        real_send(messages)

    monkeypatch.setattr(queue, "send", dies_on_second_page)
    with pytest.raises(ConnectionError):
        container.billing_runs.scheduled(NOV)
    run_id = "sched_20261101T000000Z"
    assert container.billing_runs.view(run_id)["queued"] == 5          # the first page only
    container.billing_runs.scheduled(NOV)                              # the retried invocation
    close_worker.drain()
    run = container.billing_runs.view(run_id)
    assert (run["status"], run["queued"], run["closed"], run["failed"]) == ("finished", 12, 12, 0)
    assert_each_invoiced_once(container, ids)


# -- the worker ----------------------------------------------------------------------------
def test_a_batch_reports_only_its_transiently_failed_records(
        container: Any, close_queue_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = customers(container, 3)
    run = container.billing_runs.scheduled(NOV)
    real = container.billing.close_customer
    outage = {"c001"}

    def flaky(customer_id: str, as_of: datetime, summary: Any) -> None:
        if customer_id in outage:
            raise ConnectionError("DynamoDB unreachable")
        real(customer_id, as_of, summary)

    monkeypatch.setattr(container.billing, "close_customer", flaky)
    got = sqs().receive_message(QueueUrl=close_queue_url, MaxNumberOfMessages=10,
                                MessageSystemAttributeNames=["All"])["Messages"]
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:t-close",
                "awsRegion": "us-east-1"} for m in got]
    result = process({"Records": records}, LambdaContext("close_worker"), container.billing_runs)
    failed = [r for r in records if json.loads(r["body"])["customer"] == "c001"]
    assert result == {"batchItemFailures": [{"itemIdentifier": failed[0]["messageId"]}]}
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["closed"], view["failed"]) == ("running", 2, 0)
    # the outage ends; SQS delivers the failed record again
    outage.clear()
    immediate_redelivery(close_queue_url)
    sqs().change_message_visibility(QueueUrl=close_queue_url, ReceiptHandle=failed[0]["receiptHandle"],
                                    VisibilityTimeout=0)
    for m in got:   # what Lambda deletes after a partial batch response
        if m["MessageId"] != failed[0]["messageId"]:
            sqs().delete_message(QueueUrl=close_queue_url, ReceiptHandle=m["ReceiptHandle"])
    QueueWorker(sqs(), close_queue_url, lambda e, c: process(e, c, container.billing_runs)).drain()
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["queued"], view["closed"], view["failed"]) == ("finished", 3, 3, 0)
    assert_each_invoiced_once(container, ids)


def test_a_redelivered_message_closes_nothing_again(container: Any, close_queue_url: str) -> None:
    customers(container, 1)
    run = container.billing_runs.scheduled(NOV)
    [message] = queued_messages(close_queue_url)
    assert container.billing_runs.handle(message) == "closed"
    before = container.billing_runs.view(run["id"])
    assert container.billing_runs.handle(message, receive_count=2) == "closed"   # redelivered
    # even if the outcome had not been recorded: close_customer itself finds nothing left to close
    from meterbill.services.billing import RunSummary

    summary = RunSummary(as_of="2026-11-01T00:00:00Z")
    container.billing.close_customer("c000", NOV, summary)
    assert summary.invoices == [] and summary.drafts == []
    assert container.billing_runs.view(run["id"]) == before
    assert (before["closed"], before["queued"], before["status"]) == (1, 1, "finished")
    assert invoice_numbers(container) == ["T-000001"]


def test_a_worker_killed_after_its_commit_loses_and_duplicates_nothing(
        container: Any, close_queue_url: str, close_worker: QueueWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker dies between the invoice's commit and recording the outcome (no delete, no
    visibility change): SQS delivers the message again; the re-run closes nothing twice."""
    ids = customers(container, 15)
    immediate_redelivery(close_queue_url)
    store = container.billing_store
    real, kills = store.record_outcome, {"left": 6}

    def killed(*args: Any, **kwargs: Any) -> bool:
        if kills["left"]:
            kills["left"] -= 1
            raise SystemExit("worker killed")      # not an Exception: nothing in the worker catches it
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "record_outcome", killed)
    worker = QueueWorker(sqs(), close_queue_url, lambda e, c: crash_isolated(e, c, container))
    run = container.billing_runs.scheduled(NOV)
    worker.drain()
    assert kills["left"] == 0
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["queued"], view["closed"], view["failed"], view["waiting"]) == \
        ("finished", 15, 15, 0, 0)
    assert_each_invoiced_once(container, ids)


def crash_isolated(event: dict[str, Any], ctx: Any, container: Any) -> dict[str, Any]:
    """The Lambda runtime: a killed invocation (SystemExit) is an invocation error for its whole batch."""
    try:
        return process(event, ctx, container.billing_runs)
    except SystemExit as exc:
        raise RuntimeError(str(exc)) from exc


def test_a_worker_stopped_mid_batch_loses_and_duplicates_nothing(
        container: Any, close_queue_url: str) -> None:
    """The worker handles the first records of its batch, then stops before answering: nothing
    of the batch is deleted, every message comes back, the handled ones change nothing."""
    ids = customers(container, 10)
    immediate_redelivery(close_queue_url)
    run = container.billing_runs.scheduled(NOV)
    stopped = {"done": False}

    def stops_mid_batch(event: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if not stopped["done"]:
            stopped["done"] = True
            process({"Records": event["Records"][:4]}, ctx, container.billing_runs)
            raise RuntimeError("worker thread stopped mid-batch")
        return process(event, ctx, container.billing_runs)

    QueueWorker(sqs(), close_queue_url, stops_mid_batch).drain()
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["queued"], view["closed"]) == ("finished", 10, 10)
    assert_each_invoiced_once(container, ids)


# -- waiting for usage ---------------------------------------------------------------------
def test_a_customer_waiting_for_usage_is_retried_and_closed_once_it_is_applied(
        container: Any, drain: Any, close_worker: QueueWorker) -> None:
    customers(container, 1)
    container.ingest.ingest(json.dumps({"events": [ev(1, customer="c000", tokens=500)]}), None)  # not aggregated
    run = container.billing_runs.request(NOV)
    close_worker.poll_once()                   # the dispatch: aggregation is behind
    assert container.billing_runs.view(run["id"])["usage_lag"]["reason"] == "unapplied_records"
    close_worker.poll_once()                   # c000: waiting, put back on the queue
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["waiting"], view["closed"]) == ("running", 1, 0)
    assert [(w["customer"], w["attempts"], w["given_up"]) for w in view["waiting_customers"]] == [("c000", 1, False)]
    [draft] = container.billing_store.list_invoices("c000", 10, None)[0]
    assert draft["status"] == "draft" and draft["waiting_for_usage"]
    drain()                                    # aggregation catches up
    billing_runs.LAG_RECHECK_S, saved = 0, billing_runs.LAG_RECHECK_S
    try:
        close_worker.drain()
    finally:
        billing_runs.LAG_RECHECK_S = saved
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["waiting"], view["closed"], view["waiting_customers"]) == ("finished", 0, 1, [])
    [inv] = container.billing_store.list_invoices("c000", 10, None)[0]
    assert inv["number"] == "T-000001" and inv["total"] == "54.00"     # 49.00 + 500 tokens at 0.01


def test_a_customer_still_waiting_after_the_bounded_attempts_is_given_up_and_the_run_finishes(
        container: Any, close_worker: QueueWorker, close_queue_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_runs, "LAG_RECHECK_S", 0)
    customers(container, 1)
    container.ingest.ingest(json.dumps({"events": [ev(1, customer="c000", tokens=500)]}), None)  # never aggregated
    run = container.billing_runs.request(NOV)
    close_worker.drain()
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["waiting"], view["given_up"], view["closed"]) == ("finished", 1, 1, 0)
    assert [(w["attempts"], w["given_up"]) for w in view["waiting_customers"]] == [(5, True)]
    assert view["finished_at"] and queued_messages(close_queue_url) == []
    [draft] = container.billing_store.list_invoices("c000", 10, None)[0]
    assert draft["status"] == "draft" and draft["waiting_for_usage"]["reason"] == "unapplied_records"


def test_a_customer_with_a_domain_error_fails_with_its_reason_and_is_not_retried(
        container: Any, close_worker: QueueWorker, close_queue_url: str) -> None:
    ids = customers(container, 3)
    bad = container.billing_store.get_customer(ids[1])
    bad["plan"] = "gone"
    container.billing_store.put_customer(bad, int(bad["version"]))
    finished: list[dict[str, Any]] = []
    container.billing_runs.on_run_finished = finished.append
    run = container.billing_runs.scheduled(NOV)
    close_worker.drain()
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["closed"], view["failed"]) == ("finished", 2, 1)
    assert [f["customer"] for f in view["failures"]] == [ids[1]] and "gone" in view["failures"][0]["reason"]
    assert queued_messages(close_queue_url) == []
    assert [r["id"] for r in finished] == [run["id"]]          # the extension point, once


def test_a_run_with_nothing_due_finishes_at_once(container: Any) -> None:
    run = container.billing_runs.scheduled(NOV)
    assert (run["status"], run["queued"]) == ("finished", 0) and run["finished_at"]


# -- the API -------------------------------------------------------------------------------
@pytest.fixture
def api(container: Any) -> Any:
    from tests.integration.test_api import Api, SECRETS
    from aws_lambda_powertools.event_handler import HttpResolverLocal

    from meterbill.api.app import build_app

    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container), container)


def test_post_answers_202_at_once_and_get_shows_the_run_finish(api: Any, container: Any,
                                                                close_worker: QueueWorker) -> None:
    customers(container, 2)
    resp = api.post("/v1/billing-runs", {"as_of": "2026-11-01T00:00:00Z"})
    assert resp.status_code == 202, resp.text
    run = resp.json()
    assert run["status"] == "dispatching" and run["queued"] == 0 and run["finished_at"] is None
    close_worker.drain()
    done = api.ok("GET", f"/v1/billing-runs/{run['id']}")
    assert (done["status"], done["queued"], done["closed"], done["failed"], done["waiting"]) == \
        ("finished", 2, 2, 0, 0)
    assert done["finished_at"] and done["failures"] == [] and done["waiting_customers"] == []
    assert api.get("/v1/billing-runs/run_nope").status_code == 404


def test_the_same_idempotency_key_names_the_same_run(api: Any, container: Any, close_worker: QueueWorker) -> None:
    customers(container, 1)
    headers = {"Idempotency-Key": "close-october"}
    first = api.post("/v1/billing-runs", {"as_of": "2026-11-01T00:00:00Z"}, headers=headers).json()
    close_worker.drain()
    again = api.post("/v1/billing-runs", {"as_of": "2026-11-01T00:00:00Z"}, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == first["id"] and again.json()["status"] == "finished"
    other = api.post("/v1/billing-runs", {"as_of": "2026-10-15T00:00:00Z"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    bad = api.post("/v1/billing-runs", {}, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "Idempotency-Key"
    assert len(api.ok("GET", "/v1/billing-runs")["data"]) == 1


def test_runs_are_listed_newest_first_a_page_at_a_time(api: Any, container: Any, clock: Any) -> None:
    ids = []
    for _ in range(3):
        ids.append(api.post("/v1/billing-runs", {}).json()["id"])
        clock.advance(minutes=1)
    first = api.ok("GET", "/v1/billing-runs", params={"limit": 2})
    assert [r["id"] for r in first["data"]] == ids[::-1][:2] and first["next_cursor"]
    rest = api.ok("GET", "/v1/billing-runs", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [r["id"] for r in rest["data"]] == ids[:1]
    assert api.get("/v1/billing-runs", params={"cursor": "bm9wZQ"}).status_code == 400


def test_a_transaction_conflict_on_the_run_is_retried_not_taken_for_a_recorded_outcome(
        container: Any, close_queue_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every outcome's transaction adds to the run's counters: parallel workers conflict on that
    item (TransactionConflict). That is transient: the message must come back, never be dropped as
    if its outcome were already recorded."""
    from botocore.exceptions import ClientError

    customers(container, 1)
    run = container.billing_runs.scheduled(NOV)
    [message] = queued_messages(close_queue_url)
    client = container.billing_store._c
    real = client.transact_write_items

    def conflicting(**kwargs: Any) -> Any:
        if any("Key" in op.get("Update", {}) and op["Update"]["Key"]["sk"]["S"] == "RUN"
               for op in kwargs["TransactItems"]):
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                               "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
                              "TransactWriteItems")
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", conflicting)
    with pytest.raises(ClientError):
        container.billing_runs.handle(message)
    assert container.billing_runs.view(run["id"])["closed"] == 0
    monkeypatch.setattr(client, "transact_write_items", real)
    assert container.billing_runs.handle(message, receive_count=2) == "closed"    # the redelivery
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["closed"]) == ("finished", 1) and invoice_numbers(container) == ["T-000001"]


def test_parallel_workers_lose_and_duplicate_nothing(container: Any, close_queue_url: str) -> None:
    """Four workers on one queue at once (as `meterbill run` and Lambda run them)."""
    import threading

    ids = customers(container, 24)
    run = container.billing_runs.scheduled(NOV)
    worker = QueueWorker(sqs(), close_queue_url, lambda e, c: process(e, c, container.billing_runs))
    threads = [threading.Thread(target=worker.drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worker.drain()
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["queued"], view["closed"], view["failed"]) == ("finished", 24, 24, 0)
    assert_each_invoiced_once(container, ids)


def test_a_finished_run_has_numbered_every_invoice_it_committed(container: Any, close_queue_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers number after each batch; should those passes not have run (a worker died after its
    commits), the run still numbers what waits before it says it has finished."""
    ids = customers(container, 5)
    monkeypatch.setattr(container.billing_runs, "number_invoices", lambda: 0)   # no batch-level pass
    run = container.billing_runs.scheduled(NOV)
    worker = QueueWorker(sqs(), close_queue_url, lambda e, c: process(e, c, container.billing_runs))
    worker.drain()
    view = container.billing_runs.view(run["id"])
    assert (view["status"], view["closed"]) == ("finished", 5)
    statuses = {i["status"] for cid in ids for i in container.billing_store.list_invoices(cid, 10, None)[0]}
    assert statuses == {"final"}
    assert_each_invoiced_once(container, ids)
