"""Invoices reach the integrations exactly once: close → numbered → outbox (same transaction) →
billing-table stream → fan-out function → one SQS queue per integration → dispatch function →
sync record ``synced`` with the external ids. On moto, with the real Stripe plugin on the fake
Stripe behind the SDK's HTTP client, and a recording fake of a second integration ("books")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import boto3
import pytest

from meterbill.integration.contract import ExternalRef, Permanent, Problem, Retryable
from meterbill.services.sync import RetryLater
from tests.conftest import FakeClock, ev, standard_catalog
from tests.integration.stripe_fake import FakeStripe
from tests.integration.stripe_support import plugin as stripe_plugin

NOV = datetime.fromisoformat("2026-11-01T00:00:00Z")


class Books:
    """A second integration (an accounting system): records every call, pushes succeed."""

    name: ClassVar[str] = "books"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []   # (method, meterbill id, idempotency key)
        self.invoices: dict[str, str] = {}

    def validate_config(self, settings: Any) -> list[Problem]:
        return []

    def validate_invoice(self, invoice: Any) -> list[Problem]:
        return []

    def upsert_customer(self, customer: Any) -> ExternalRef:
        return ExternalRef(f"contact-{customer['id']}")

    def find_invoice(self, invoice: Any, customer_ref: ExternalRef) -> ExternalRef | None:
        found = self.invoices.get(invoice["id"])
        return ExternalRef(found, invoice["number"]) if found else None

    def push_invoice(self, invoice: Any, customer_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        self.calls.append(("push_invoice", invoice["id"], idempotency_key))
        self.invoices[invoice["id"]] = f"bk-{len(self.invoices) + 1}"
        return ExternalRef(self.invoices[invoice["id"]], invoice["number"], "https://books.example/inv")

    def void_invoice(self, invoice: Any, invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        self.calls.append(("void_invoice", invoice["id"], idempotency_key))
        return invoice_ref

    def push_credit_note(self, note: Any, invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        self.calls.append(("push_credit_note", note["id"], idempotency_key))
        return ExternalRef(f"cn-{note['id']}")

    def record_payment(self, invoice: Any, payment: Any, invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        self.calls.append(("record_payment", invoice["id"], idempotency_key))
        return invoice_ref

    def classify(self, exc: BaseException) -> Permanent | Retryable:
        return Retryable(str(exc))


@pytest.fixture
def fake(clock: FakeClock) -> FakeStripe:
    stripe = FakeStripe()
    stripe.now = int(clock().timestamp())   # Stripe's clock: its objects are created after meterbill's commit
    return stripe


@pytest.fixture
def books() -> Books:
    return Books()


@pytest.fixture
def sync_queues(aws: None) -> dict[str, str]:
    from infra.template import create_queues

    sqs = boto3.client("sqs", region_name="us-east-1")
    urls = create_queues(sqs, {"StripeSyncQueue": "t-stripe"})
    return {"stripe": urls["StripeSyncQueue"], "books": sqs.create_queue(QueueName="t-books")["QueueUrl"]}


@pytest.fixture
def app(ddb: Any, clock: FakeClock, close_queue_url: str, sync_queues: dict[str, str], fake: FakeStripe,
        books: Books) -> Any:
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    return bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                              usage_wait_s=0, stream_settle_s=0, close_queue_url=close_queue_url,
                              close_wait_retry_s=0, integrations=("stripe", "books"),
                              sync_queue_urls=tuple(sync_queues.items())),
                     client=ddb, clock=clock, cache_ttl_s=0,
                     plugins={"stripe": stripe_plugin(fake), "books": books})


@pytest.fixture
def pipeline(app: Any, sync_queues: dict[str, str]) -> Any:
    """The deployed path, Lambda-style: the events stream → aggregator, the billing table's stream
    → the fan-out function's handler, each sync queue → the dispatch function's handler."""
    from functions import outbox_fanout
    from meterbill.local.stack import StreamPoller, sync_workers

    def aggregate(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        app.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    class Pipeline:
        events = StreamPoller(None, "t-events", aggregate)
        outbox = StreamPoller(None, "t-billing", lambda e, c: outbox_fanout.process(e, c, app.sync))
        workers = {w._name.removesuffix("_dispatch"): w for w in sync_workers(None, app)}

        def run(self) -> None:
            self.outbox.drain()
            for worker in self.workers.values():
                worker.drain()

    return Pipeline()


def closed_invoice(app: Any, pipeline: Any) -> dict[str, Any]:
    standard_catalog(app)
    app.ingest.ingest('{"events": [%s]}' % ",".join(
        __import__("json").dumps(ev(i, tokens=300)) for i in range(5)), "application/json")
    pipeline.events.drain()
    summary = app.billing.run(NOV)
    assert len(summary.invoices) == 1
    inv = app.billing_store.get_invoice(summary.invoices[0])
    assert inv["status"] == "final" and inv["number"] == "T-000001"
    return dict(inv)


def message(inv: dict[str, Any]) -> dict[str, Any]:
    return {"outbox": "push#000000000001", "action": "push", "invoice": inv["id"]}


def test_a_numbered_invoice_reaches_every_integration_once(app: Any, pipeline: Any, fake: FakeStripe,
                                                            books: Books) -> None:
    inv = closed_invoice(app, pipeline)
    outbox = app.billing_store._get("OUTBOX#push#000000000001", "OUTBOX")
    assert outbox["invoices"] == [inv["id"]] and outbox["action"] == "push"   # written with the number
    pipeline.run()
    [stripe_inv] = fake.invoices.values()
    assert stripe_inv["status"] == "open" and stripe_inv["metadata"]["meterbill_invoice_id"] == inv["id"]
    assert stripe_inv["total"] == 6151                            # 61.51 USD in cents, exact
    state = app.sync.sync_state(inv["id"])
    assert state["stripe"]["status"] == "synced" and state["stripe"]["external_id"] == stripe_inv["id"]
    assert state["stripe"]["attempts"] == 1 and state["stripe"]["error"] is None
    assert state["books"]["status"] == "synced" and state["books"]["external_id"] == "bk-1"
    assert books.calls == [("push_invoice", inv["id"], f"mb:books:{inv['id']}:push:v1")]
    # the collecting integration's hosted page is the invoice's payment_url; books' URL is not
    assert app.billing_store.get_invoice(inv["id"])["payment_url"] == stripe_inv["hosted_invoice_url"]
    # the customer's Stripe id is remembered for the next invoice
    assert app.billing_store.get_customer_ref("acme", "stripe")["id"] == stripe_inv["customer"]


def test_a_redelivered_message_does_nothing_twice(app: Any, pipeline: Any, fake: FakeStripe, books: Books) -> None:
    inv = closed_invoice(app, pipeline)
    pipeline.run()
    writes = len(fake.writes())
    assert app.sync.dispatch("stripe", message(inv)) == "done"
    assert app.sync.dispatch("books", message(inv)) == "done"
    pipeline.outbox.drain()   # nothing new in the stream
    assert len(fake.writes()) == writes and len(books.calls) == 1 and len(fake.invoices) == 1


def test_500_on_create_then_success_makes_one_stripe_invoice(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    fake.fail("POST", "/v1/invoices", "500_after")
    with pytest.raises(RetryLater):
        app.sync.dispatch("stripe", message(inv))
    assert app.sync.sync_state(inv["id"])["stripe"]["status"] == "unknown"
    assert app.sync.dispatch("stripe", message(inv)) == "synced"
    assert len(fake.invoices) == 1
    assert app.sync.sync_state(inv["id"])["stripe"]["attempts"] == 2


def test_a_timeout_then_expired_keys_look_up_the_first_invoice(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    fake.fail("POST", "/v1/invoices", "timeout_after")
    with pytest.raises(RetryLater):
        app.sync.dispatch("stripe", message(inv))
    fake.forget_keys()   # days of outage: Stripe pruned the idempotency keys
    assert app.sync.dispatch("stripe", message(inv)) == "synced"
    assert len(fake.invoices) == 1


def test_429_comes_back_after_retry_after(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    fake.fail("GET", "/v1/customers", "429", retry_after="7")
    with pytest.raises(RetryLater) as later:
        app.sync.dispatch("stripe", message(inv))
    assert later.value.after_s == 7
    assert app.sync.sync_state(inv["id"])["stripe"]["status"] == "pending"
    assert app.sync.dispatch("stripe", message(inv)) == "synced"


def test_a_retry_through_the_queue_sets_the_message_visibility(app: Any, pipeline: Any, fake: FakeStripe,
                                                               sync_queues: dict[str, str]) -> None:
    inv = closed_invoice(app, pipeline)
    fake.fail("GET", "/v1/customers", "429", retry_after="30")
    pipeline.run()
    assert app.sync.sync_state(inv["id"])["stripe"]["status"] == "pending"
    sqs = boto3.client("sqs", region_name="us-east-1")
    attrs = sqs.get_queue_attributes(QueueUrl=sync_queues["stripe"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"   # reported failed, hidden for Retry-After
    assert pipeline.workers["stripe"].drain() == 0                 # not before it is due: no busy retry


def test_400_fails_for_good_and_is_not_retried(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    fake.fail("POST", "/v1/customers", "400")
    assert app.sync.dispatch("stripe", message(inv)) == "failed"
    state = app.sync.sync_state(inv["id"])["stripe"]
    assert state["status"] == "failed" and "Invalid request" in state["error"]
    writes = len(fake.writes())
    assert app.sync.dispatch("stripe", message(inv)) == "done"
    assert len(fake.writes()) == writes
    assert [r["invoice_id"] for r in app.billing_store.failed_syncs(10, None)[0]] == [inv["id"]]


def test_a_failed_sync_is_redriven_once_fixed(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    fake.fail("POST", "/v1/customers", "400")
    pipeline.run()
    assert app.sync.sync_state(inv["id"])["stripe"]["status"] == "failed"
    assert app.sync.redrive_failed() == [{"invoice": inv["id"], "queued": {"stripe": 1, "books": 0}}]
    pipeline.run()
    assert app.sync.sync_state(inv["id"])["stripe"]["status"] == "synced"
    assert app.billing_store.failed_syncs(10, None)[0] == []
    assert len(fake.invoices) == 1


def test_an_invalid_invoice_fails_without_a_vendor_call(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    app.billing_store._c.update_item(TableName="t-billing", Key={"pk": {"S": f"INV#{inv['id']}"}, "sk": {"S": "INVOICE"}},
                                     UpdateExpression="SET currency = :c", ExpressionAttributeValues={":c": {"S": "CLF"}})
    assert app.sync.dispatch("stripe", message(inv)) == "failed"
    assert "currency" in app.sync.sync_state(inv["id"])["stripe"]["error"]
    assert fake.requests == []


def test_an_attempt_in_flight_holds_the_record(app: Any, pipeline: Any, clock: FakeClock) -> None:
    inv = closed_invoice(app, pipeline)
    app.billing_store.claim_sync(inv["id"], "stripe", "", {"invoice_id": inv["id"], "integration": "stripe",
                                                            "action": "push"}, "other", "2026-11-05T12:00:00.000Z",
                                 "2026-11-05T12:15:00.000Z")
    with pytest.raises(RetryLater):
        app.sync.dispatch("stripe", message(inv))
    clock.advance(minutes=16)   # its holder died: the lease ran out, the next attempt looks up first
    assert app.sync.dispatch("stripe", message(inv)) == "synced"


def test_mark_paid_and_void_reach_the_integrations(app: Any, pipeline: Any, fake: FakeStripe, books: Books) -> None:
    inv = closed_invoice(app, pipeline)
    pipeline.run()
    app.billing.transition(inv["id"], "mark-paid", reference="wire 42")
    pipeline.run()
    [stripe_inv] = fake.invoices.values()
    assert stripe_inv["status"] == "paid"          # paid out of band in Stripe
    assert books.calls[-1][:2] == ("record_payment", inv["id"])
    state = app.sync.sync_state(inv["id"])
    assert [a["action"] for a in state["books"]["actions"]] == ["paid"]
    assert state["books"]["actions"][0]["status"] == "synced"
    pipeline.run()
    assert [c[0] for c in books.calls] == ["push_invoice", "record_payment"]   # once


def test_a_payment_before_the_push_waits_for_it(app: Any, pipeline: Any, books: Books) -> None:
    inv = closed_invoice(app, pipeline)
    app.billing.transition(inv["id"], "void")
    msg = {"outbox": f"void#{inv['id']}", "action": "void", "invoice": inv["id"]}
    with pytest.raises(RetryLater):
        app.sync.dispatch("books", msg)
    assert app.sync.dispatch("books", message(inv)) == "synced"
    assert app.sync.dispatch("books", msg) == "synced"
    assert [c[0] for c in books.calls] == ["push_invoice", "void_invoice"]


def test_meterbill_sync_failed_redrives_from_the_command_line(app: Any, pipeline: Any, fake: FakeStripe,
                                                              monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from meterbill import cli

    inv = closed_invoice(app, pipeline)
    fake.fail("POST", "/v1/customers", "400")
    pipeline.run()
    monkeypatch.setattr("meterbill.bootstrap.bootstrap", lambda: app)
    monkeypatch.setattr("meterbill.local.stack.read_state", lambda: {})
    assert cli.main(["sync", "--failed"]) == 0
    assert capsys.readouterr().out == f"{inv['id']}: queued stripe: 1, books: 0\n"
    pipeline.run()
    assert app.sync.sync_state(inv["id"])["stripe"]["status"] == "synced" and len(fake.invoices) == 1


def test_sync_over_http(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    from aws_lambda_powertools.event_handler import HttpResolverLocal

    from meterbill.api.app import build_app
    from tests.integration.test_api import SECRETS, Api

    inv = closed_invoice(app, pipeline)
    pipeline.run()
    for scope, secret in SECRETS.items():
        app.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: app), app)
    shown = api.ok("GET", f"/v1/invoices/{inv['id']}", key="read")
    assert shown["integrations"]["stripe"]["status"] == "synced"
    assert shown["integrations"]["books"]["external_id"] == "bk-1"
    assert shown["payment_url"].startswith("https://")
    queued = api.post(f"/v1/invoices/{inv['id']}/sync?integration=stripe")
    assert queued.status_code == 202 and queued.json() == {"invoice": inv["id"], "queued": {"stripe": 0}}  # synced
    refused = api.post(f"/v1/invoices/{inv['id']}/sync?integration=xero")
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "integration"


# -- Stripe webhooks: signed exactly as Stripe signs them, through the API Gateway event shape ----

def webhook(app: Any, body: bytes, signature: str | None = None, base64_encoded: bool = True) -> dict[str, Any]:
    import base64

    from functions.stripe_webhook import process
    from tests.integration.stripe_support import sign

    event = {"version": "2.0", "routeKey": "POST /v1/webhooks/stripe", "rawPath": "/v1/webhooks/stripe",
             "headers": {"content-type": "application/json", "stripe-signature": signature or sign(body)},
             "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
             "isBase64Encoded": base64_encoded}
    return process(event, app.webhooks)


def stripe_event(fake: FakeStripe, inv: dict[str, Any], type_: str, event_id: str) -> bytes:
    from tests.integration.stripe_support import event

    [stripe_inv] = fake.invoices.values()
    return event(type_, fake._invoice_view(stripe_inv), event_id=event_id)


def test_stripe_paid_webhook_pays_the_invoice_and_reaches_the_other_integration(
        app: Any, pipeline: Any, fake: FakeStripe, books: Books) -> None:
    inv = closed_invoice(app, pipeline)
    pipeline.run()
    fake.pay(next(iter(fake.invoices)))
    resp = webhook(app, stripe_event(fake, inv, "invoice.paid", "evt_paid"))
    assert resp["statusCode"] == 200, resp
    paid = app.billing_store.get_invoice(inv["id"])
    assert (paid["status"], paid["paid_source"]) == ("paid", "stripe")
    pipeline.run()   # outbox paid -> record_payment: books hears of it; Stripe is not paid twice
    assert [c[0] for c in books.calls] == ["push_invoice", "record_payment"]
    assert not [w for w in fake.writes() if w[1].endswith("/pay")]
    # the same event again: applied once
    again = webhook(app, stripe_event(fake, inv, "invoice.paid", "evt_paid"))
    assert again["statusCode"] == 200 and '"duplicate": true' in again["body"]


def test_a_late_payment_failed_never_unpays(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    pipeline.run()
    fake.pay(next(iter(fake.invoices)))
    assert webhook(app, stripe_event(fake, inv, "invoice.paid", "evt_2"))["statusCode"] == 200
    late = webhook(app, stripe_event(fake, inv, "invoice.payment_failed", "evt_1"))   # out of order
    assert late["statusCode"] == 200 and '"unchanged"' in late["body"]
    assert app.billing_store.get_invoice(inv["id"])["status"] == "paid"


def test_a_bad_signature_is_400_and_changes_nothing(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    from tests.integration.stripe_support import sign

    inv = closed_invoice(app, pipeline)
    pipeline.run()
    body = stripe_event(fake, inv, "invoice.paid", "evt_x")
    resp = webhook(app, body, signature=sign(body, secret="whsec_wrong"))
    assert resp["statusCode"] == 400 and '"field": "signature"' in resp["body"]
    assert app.billing_store.get_invoice(inv["id"])["status"] == "final"
    assert not app.billing_store.webhook_seen("stripe", "evt_x")


def test_unknown_event_types_are_2xx_and_ignored(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    from tests.integration.stripe_support import event

    resp = webhook(app, event("customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_c"),
                   base64_encoded=False)
    assert resp["statusCode"] == 200 and "ignored" in resp["body"]
