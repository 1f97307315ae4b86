"""Payments and collections (docs/integrations.md, "Payments, terms and dunning"), on moto with
the real Stripe, HubSpot and Xero modules on their in-process fakes, through the deployed path:
outbox (same transaction) → billing-table stream → fan-out → one queue per integration →
dispatch. Offline payments (partial, full, duplicate, overpaid), Stripe-collected payments as
payment records, collection terms on the invoice, and the dunning ladder on a FakeClock."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from integrations.hubspot import HubSpotIntegration
from integrations.xero import XeroIntegration
from meterbill.domain.instants import parse_instant
from meterbill.services.errors import Conflict, InvalidField
from tests.conftest import FakeClock
from tests.integration import hubspot_support, xero_support
from tests.integration.hubspot_fake import FakeHubSpot
from tests.integration.stripe_fake import FakeStripe
from tests.integration.stripe_support import plugin as stripe_plugin
from tests.integration.test_integration_sync import NOV, closed_invoice, stripe_event, webhook
from tests.integration.test_integration_sync import pipeline, sync_queues  # noqa: F401 - fixtures (on this app)
from tests.integration.xero_fake import FakeXero

INTEGRATIONS = ("stripe", "hubspot", "xero")


@pytest.fixture
def fake(clock: FakeClock) -> FakeStripe:
    stripe = FakeStripe()
    stripe.now = int(clock().timestamp())
    return stripe


@pytest.fixture
def hubspot() -> FakeHubSpot:
    return FakeHubSpot()


@pytest.fixture
def xero() -> FakeXero:
    return FakeXero()


@pytest.fixture
def app(ddb: Any, clock: FakeClock, close_queue_url: str, fake: FakeStripe, hubspot: FakeHubSpot,
        xero: FakeXero, sync_queues: dict[str, str]) -> Any:
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    sqs = boto3.client("sqs", region_name="us-east-1")
    queues = {"stripe": sync_queues["stripe"],   # the template's Stripe sync queue
              **{name: sqs.create_queue(QueueName=f"t-{name}")["QueueUrl"] for name in ("hubspot", "xero")}}
    return bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                              usage_wait_s=0, stream_settle_s=0, close_queue_url=close_queue_url,
                              close_wait_retry_s=0, integrations=INTEGRATIONS,
                              sync_queue_urls=tuple(queues.items())),
                     client=ddb, clock=clock, cache_ttl_s=0,
                     plugins={"stripe": stripe_plugin(fake),
                              "hubspot": HubSpotIntegration(hubspot_support.settings(), http=hubspot),
                              "xero": XeroIntegration(xero_support.settings(), http=xero)})


@pytest.fixture
def invoice(app: Any, pipeline: Any) -> dict[str, Any]:
    """acme's October invoice (61.51 USD, net 15, send_invoice), pushed to all three."""
    inv = closed_invoice(app, pipeline)
    pipeline.run()
    state = app.sync.sync_state(inv["id"])
    assert {name: state[name]["status"] for name in INTEGRATIONS} == dict.fromkeys(INTEGRATIONS, "synced")
    return inv


def stripe_pays(fake: FakeStripe) -> list[Any]:
    return [w for w in fake.writes() if w[1].endswith("/pay")]


def stripe_sends(fake: FakeStripe) -> list[Any]:
    return [w for w in fake.writes() if w[1].endswith("/send")]


def xero_payments(xero: FakeXero, inv: dict[str, Any]) -> list[dict[str, Any]]:
    return list(xero.invoice_by_number(inv["number"])["Payments"])


def hubspot_invoice(hubspot: FakeHubSpot, inv: dict[str, Any]) -> dict[str, Any]:
    [found] = [o for o in hubspot.of("invoices") if o.get("meterbill_invoice_id") == inv["id"]]
    return dict(found)


def tasks(hubspot: FakeHubSpot) -> list[str]:
    return [t["hs_task_subject"] for t in hubspot.of("tasks")]


# -- collection terms --------------------------------------------------------------------------------


def test_terms_are_copied_onto_the_invoice_and_sent_to_stripe(app: Any, pipeline: Any, fake: FakeStripe) -> None:
    inv = closed_invoice(app, pipeline)
    committed = parse_instant(inv["created_at"], "created_at")
    assert inv["collection_method"] == "send_invoice" and inv["payment_terms_days"] == 15
    assert parse_instant(inv["due_at"], "due_at") == committed + timedelta(days=15)
    pipeline.run()
    created = next(p for m, path, p, _ in fake.requests if (m, path) == ("POST", "/v1/invoices"))
    assert created["collection_method"] == "send_invoice" and created["days_until_due"] == "15"


def test_a_customer_collected_automatically_keeps_that_on_its_invoice(app: Any, pipeline: Any,
                                                                     fake: FakeStripe) -> None:
    from tests.conftest import standard_catalog

    standard_catalog(app)
    app.catalog.put_customer("acme", {"name": "Acme", "email": "ap@acme.example", "plan": "pro",
                                      "started_at": "2026-10-01T00:00:00Z",
                                      "billing_anchor": "2026-10-01T00:00:00Z", "payment_terms_days": 15,
                                      "collection_method": "charge_automatically"})
    with pytest.raises(InvalidField) as bad:
        app.catalog.put_customer("acme", {"name": "Acme", "plan": "pro", "collection_method": "cheque"})
    assert bad.value.field == "collection_method"
    summary = app.billing.run(NOV)
    inv = app.billing_store.get_invoice(summary.invoices[0])
    assert inv["collection_method"] == "charge_automatically"
    pipeline.run()
    created = next(p for m, path, p, _ in fake.requests if (m, path) == ("POST", "/v1/invoices"))
    assert created["collection_method"] == "charge_automatically" and "days_until_due" not in created


# -- offline payments ----------------------------------------------------------------------------------


def test_partial_then_full_payment_is_paid_and_reaches_each_integration_once(
        app: Any, pipeline: Any, invoice: dict[str, Any], fake: FakeStripe, hubspot: FakeHubSpot,
        xero: FakeXero) -> None:
    first, created = app.payments.record(invoice["id"], {"amount": "20.00", "date": "2026-11-20",
                                                         "reference": "WIRE-1"})
    assert created and (first["amount"], first["balance_after"], first["source"]) == ("20.00", "41.51", "offline")
    partly = app.billing_store.get_invoice(invoice["id"])
    assert (partly["status"], partly["amount_paid"]) == ("final", "20.00")
    pipeline.run()
    assert [p["Amount"] for p in xero_payments(xero, invoice)] == [Decimal("20.00")]
    assert stripe_pays(fake) == []                      # Stripe takes no partial out-of-band payment
    assert hubspot_invoice(hubspot, invoice)["meterbill_payment_status"] == "partially_paid"

    second, _ = app.payments.record(invoice["id"], {"amount": "41.51", "date": "2026-11-25",
                                                    "reference": "WIRE-2"})
    assert second["balance_after"] == "0.00"
    paid = app.billing_store.get_invoice(invoice["id"])
    assert (paid["status"], paid["amount_paid"], paid["paid_source"]) == ("paid", "61.51", "offline")
    pipeline.run()
    pipeline.run()   # nothing more to do: each payment reached each integration once
    assert [p["Amount"] for p in xero_payments(xero, invoice)] == [Decimal("20.00"), Decimal("41.51")]
    assert len(stripe_pays(fake)) == 1 and next(iter(fake.invoices.values()))["paid_out_of_band"] is True
    assert hubspot_invoice(hubspot, invoice)["meterbill_payment_status"] == "paid"
    actions = app.sync.sync_state(invoice["id"])["xero"]["actions"]
    assert [(a["action"], a["status"]) for a in actions] == [("payment", "synced")] * 2
    assert [p["reference"] for p in app.payments.list(invoice["id"])] == ["WIRE-1", "WIRE-2"]


def test_the_same_reference_twice_is_one_payment(app: Any, pipeline: Any, invoice: dict[str, Any],
                                                 xero: FakeXero) -> None:
    one, created = app.payments.record(invoice["id"], {"amount": "10.00", "reference": "CHQ-7"})
    again, created_again = app.payments.record(invoice["id"], {"amount": "10.00", "reference": "CHQ-7"})
    assert created and not created_again and again == one
    with pytest.raises(Conflict) as different:
        app.payments.record(invoice["id"], {"amount": "11.00", "reference": "CHQ-7"})
    assert different.value.field == "reference"
    pipeline.run()
    assert app.billing_store.get_invoice(invoice["id"])["amount_paid"] == "10.00"
    assert len(app.payments.list(invoice["id"])) == 1 and len(xero_payments(xero, invoice)) == 1


def test_payments_over_http(app: Any, invoice: dict[str, Any]) -> None:
    from aws_lambda_powertools.event_handler import HttpResolverLocal

    from meterbill.api.app import build_app
    from tests.integration.test_api import SECRETS, Api

    for scope, secret in SECRETS.items():
        app.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: app), app)
    url = f"/v1/invoices/{invoice['id']}/payments"
    made = api.post(url, {"amount": "12.00", "date": "2026-11-21", "reference": "WIRE-9"})
    assert made.status_code == 201 and made.json()["balance_after"] == "49.51"
    repeat = api.post(url, {"amount": "12.00", "date": "2026-11-21", "reference": "WIRE-9"})
    assert repeat.status_code == 201 and repeat.json() == made.json()
    keyed = api.post(url, {"amount": "1.00"}, headers={"Idempotency-Key": "pay-once-1"})
    keyed_again = api.post(url, {"amount": "1.00"}, headers={"Idempotency-Key": "pay-once-1"})
    assert keyed.status_code == 201 and keyed_again.json()["id"] == keyed.json()["id"]
    over = api.post(url, {"amount": "48.52", "reference": "WIRE-10"})
    assert over.status_code == 400 and over.json()["error"]["field"] == "amount"
    assert "48.51" in over.json()["error"]["message"]
    unreferenced = api.post(url, {"amount": "1.00"})
    assert unreferenced.status_code == 400 and unreferenced.json()["error"]["field"] == "reference"
    bad_amount = api.post(url, {"amount": "1.001", "reference": "WIRE-11"})
    assert bad_amount.status_code == 400 and bad_amount.json()["error"]["field"] == "amount"
    listed = api.ok("GET", url, key="read")
    assert [p.get("reference") for p in listed["data"]] == ["WIRE-9", None]
    shown = api.ok("GET", f"/v1/invoices/{invoice['id']}", key="read")
    assert (shown["amount_paid"], shown["balance_due"]) == ("13.00", "48.51")
    app.billing.transition(invoice["id"], "void")
    void = api.post(url, {"amount": "1.00", "reference": "WIRE-12"})
    assert void.status_code == 409 and void.json()["error"]["field"] == "status", void.json()
    missing = api.post("/v1/invoices/in_nope/payments", {"amount": "1.00", "reference": "x"})
    assert missing.status_code == 404


def test_a_draft_takes_no_payment(app: Any, pipeline: Any) -> None:
    from tests.conftest import standard_catalog

    standard_catalog(app)
    app.catalog.put_customer("acme", {"name": "Acme", "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                      "billing_anchor": "2026-10-01T00:00:00Z", "invoice_grace_hours": 720})
    summary = app.billing.run(NOV)
    [draft] = summary.drafts
    with pytest.raises(Conflict) as refused:
        app.payments.record(draft, {"amount": "1.00", "reference": "early"})
    assert refused.value.field == "status"


def test_a_stripe_collected_payment_is_a_payment_record(app: Any, pipeline: Any, invoice: dict[str, Any],
                                                        fake: FakeStripe, xero: FakeXero) -> None:
    app.payments.record(invoice["id"], {"amount": "1.51", "reference": "WIRE-0"})
    pipeline.run()
    fake.pay(next(iter(fake.invoices)))
    assert webhook(app, stripe_event(fake, invoice, "invoice.paid", "evt_paid"))["statusCode"] == 200
    assert webhook(app, stripe_event(fake, invoice, "invoice.paid", "evt_paid_again"))["statusCode"] == 200
    payments = app.payments.list(invoice["id"])
    assert [(p["source"], p["amount"]) for p in payments] == [("offline", "1.51"), ("stripe", "60.00")]
    paid = app.billing_store.get_invoice(invoice["id"])
    assert (paid["status"], paid["amount_paid"], paid["paid_source"]) == ("paid", "61.51", "stripe")
    pipeline.run()
    assert [p["Amount"] for p in xero_payments(xero, invoice)] == [Decimal("1.51"), Decimal("60.00")]
    assert stripe_pays(fake) == []                      # collected by Stripe: never sent back to it


# -- overdue and the dunning ladder ------------------------------------------------------------------


def at_due(clock: FakeClock, inv: dict[str, Any], **after: float) -> datetime:
    clock.now = parse_instant(inv["due_at"], "due_at") + timedelta(**after)
    return clock.now


def test_the_ladder_sends_each_step_once_then_collections(app: Any, pipeline: Any, invoice: dict[str, Any],
                                                          clock: FakeClock, fake: FakeStripe,
                                                          hubspot: FakeHubSpot) -> None:
    at_due(clock, invoice, hours=-1)
    assert app.dunning.run()["examined"] == 0                     # not due yet: not even read
    at_due(clock, invoice, hours=1)
    tick = app.dunning.run()
    assert tick["overdue"] == [invoice["id"]] and tick["reminders"] == []
    pipeline.run()
    assert [s for s in tasks(hubspot) if s.startswith("Overdue")] and stripe_sends(fake) == []
    assert hubspot_invoice(hubspot, invoice)["meterbill_payment_status"] == "overdue"
    for days, step in ((1, 1), (7, 2)):
        at_due(clock, invoice, days=days, hours=1)
        assert app.dunning.run()["reminders"] == [{"invoice": invoice["id"], "step": step}]
        assert app.dunning.run()["reminders"] == []               # a retried tick sends nothing again
        pipeline.run()
        assert len(stripe_sends(fake)) == step                     # Stripe's own reminder e-mail
    at_due(clock, invoice, days=14)
    last = app.dunning.run()
    assert last["reminders"] == [{"invoice": invoice["id"], "step": 3}] and last["collections"] == [invoice["id"]]
    pipeline.run()
    at_due(clock, invoice, days=30)
    assert app.dunning.run()["examined"] == 0                     # in collections: off the open list
    flagged = app.billing_store.get_invoice(invoice["id"])
    assert [d["step"] for d in flagged["dunning"]] == [1, 2, 3] and flagged["collections_at"]
    reminders = [s for s in tasks(hubspot) if s.startswith("Reminder")]
    assert sorted(reminders) == sorted(f"Reminder {n}: invoice T-000001 (61.51 USD, due {invoice['due_at'][:10]})"
                                       for n in (1, 2, 3))
    assert len(stripe_sends(fake)) == 3
    listed, _ = app.billing_store.in_collections(10, None)
    assert [i["id"] for i in listed] == [invoice["id"]]


def test_a_late_tick_sends_only_the_step_reached(app: Any, pipeline: Any, invoice: dict[str, Any],
                                                 clock: FakeClock) -> None:
    at_due(clock, invoice, days=8)
    tick = app.dunning.run()
    assert tick["overdue"] == [invoice["id"]] and tick["reminders"] == [{"invoice": invoice["id"], "step": 2}]


def test_two_racing_ticks_send_each_step_once(app: Any, pipeline: Any, invoice: dict[str, Any],
                                              clock: FakeClock, hubspot: FakeHubSpot) -> None:
    at_due(clock, invoice, days=1, hours=1)
    # deterministic: a tick that read the invoice before another recorded the step loses its write
    [stale], _ = app.billing_store.past_due(clock().isoformat(), 10, None)
    assert app.dunning.run()["reminders"] == [{"invoice": invoice["id"], "step": 1}]
    summary: dict[str, Any] = {"overdue": [], "reminders": [], "collections": [], "already_done": 0}
    app.dunning._one(stale, clock(), summary)
    assert summary["reminders"] == [] and summary["already_done"] == 1
    # and truly concurrent ticks at the next step
    at_due(clock, invoice, days=7, hours=1)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(app.dunning.run())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r["reminders"]) for r in results) == [0, 1]
    pipeline.run()
    assert sorted(s.split(":")[0] for s in tasks(hubspot)) == ["Overdue", "Reminder 1", "Reminder 2"]
    assert [d["step"] for d in app.billing_store.get_invoice(invoice["id"])["dunning"]] == [1, 2]


def test_a_paid_invoice_stops_the_ladder(app: Any, pipeline: Any, invoice: dict[str, Any], clock: FakeClock,
                                         hubspot: FakeHubSpot) -> None:
    at_due(clock, invoice, days=1, hours=1)
    assert app.dunning.run()["reminders"] == [{"invoice": invoice["id"], "step": 1}]
    app.payments.record(invoice["id"], {"amount": "61.51", "reference": "WIRE-late"})
    at_due(clock, invoice, days=7, hours=1)
    tick = app.dunning.run()
    assert tick["examined"] == 0 and tick["reminders"] == []
    pipeline.run()
    assert not [s for s in tasks(hubspot) if s.startswith("Reminder 2")]
    assert "collections_at" not in app.billing_store.get_invoice(invoice["id"])


def test_a_partly_paid_invoice_is_still_dunned_and_a_voided_one_is_not(app: Any, pipeline: Any,
                                                                       invoice: dict[str, Any],
                                                                       clock: FakeClock) -> None:
    app.payments.record(invoice["id"], {"amount": "10.00", "reference": "WIRE-part"})
    at_due(clock, invoice, days=1, hours=1)
    assert app.dunning.run()["reminders"] == [{"invoice": invoice["id"], "step": 1}]
    app.billing.transition(invoice["id"], "void")
    at_due(clock, invoice, days=7, hours=1)
    assert app.dunning.run()["examined"] == 0


def test_a_tick_in_the_future_is_refused(app: Any, clock: FakeClock) -> None:
    with pytest.raises(InvalidField) as future:
        app.dunning.run(clock() + timedelta(days=1))
    assert future.value.field == "as_of"


def test_the_scheduled_function_and_the_collections_filter(app: Any, pipeline: Any, invoice: dict[str, Any],
                                                           clock: FakeClock) -> None:
    from aws_lambda_powertools.event_handler import HttpResolverLocal

    from functions.dunning import process
    from meterbill.api.app import build_app
    from tests.integration.test_api import SECRETS, Api

    at_due(clock, invoice, days=20)
    tick = process({"scheduled_time": clock().strftime("%Y-%m-%dT%H:%M:%SZ")}, app.dunning)
    assert tick["collections"] == [invoice["id"]] and tick["reminders"] == [{"invoice": invoice["id"], "step": 3}]
    for scope, secret in SECRETS.items():
        app.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: app), app)
    flagged = api.ok("GET", "/v1/invoices", params={"collections": "true"}, key="read")
    assert [i["id"] for i in flagged["data"]] == [invoice["id"]] and flagged["data"][0]["collections_at"]
    shown = api.ok("GET", f"/v1/invoices/{invoice['id']}", key="read")
    assert shown["overdue_at"] and shown["dunning"][0]["step"] == 3 and shown["dunning_step"] == 2
