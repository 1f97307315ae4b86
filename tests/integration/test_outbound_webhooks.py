"""Outbound webhooks on moto: endpoints over the HTTP API, then the deployed path — invoice
numbered → outbox → billing-table stream → fan-out → webhooks queue → dispatch (event → one
delivery per endpoint → signed POST) — against a local receiver that verifies each signature with
the standardwebhooks library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import boto3
import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal
from standardwebhooks.webhooks import WebhookVerificationError

from meterbill.api.app import build_app
from meterbill.integration.contract import ExternalRef, Permanent, Problem
from meterbill.services.sync import RetryLater
from tests.conftest import FakeClock
from tests.integration.test_api import SECRETS, Api, error
from tests.integration.test_integration_sync import closed_invoice, pipeline  # noqa: F401 - the same deployed path
from tests.integration.webhook_receiver import Receiver, running


class FailingBooks:
    """Another integration whose every push fails for good (a sync.failed event)."""

    name: ClassVar[str] = "books"

    def validate_config(self, settings: Any) -> list[Problem]:
        return []

    def validate_invoice(self, invoice: Any) -> list[Problem]:
        return [Problem("currency", "books does not take this currency")]

    def upsert_customer(self, customer: Any) -> ExternalRef:
        raise AssertionError("not reached")

    find_invoice = push_invoice = void_invoice = push_credit_note = record_payment = upsert_customer

    def classify(self, exc: BaseException) -> Permanent:
        return Permanent(str(exc))


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[Receiver]:
    with running(clock) as r:
        yield r


@pytest.fixture
def sync_queues(aws: None) -> dict[str, str]:
    from infra.template import create_queues

    sqs = boto3.client("sqs", region_name="us-east-1")
    return {"webhooks": create_queues(sqs, {"WebhooksQueue": "t-webhooks"})["WebhooksQueue"],
            "books": sqs.create_queue(QueueName="t-books")["QueueUrl"]}


@pytest.fixture
def app(ddb: Any, clock: FakeClock, close_queue_url: str, sync_queues: dict[str, str]) -> Any:
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    return bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                              usage_wait_s=0, stream_settle_s=0, close_queue_url=close_queue_url,
                              close_wait_retry_s=0, integrations=("webhooks", "books"),
                              sync_queue_urls=tuple(sync_queues.items())),
                     client=ddb, clock=clock, cache_ttl_s=0, plugins={"books": FailingBooks()})


@pytest.fixture
def api(app: Any) -> Api:
    for scope, secret in SECRETS.items():
        app.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: app), app)


def endpoint(api: Api, endpoint_id: str, url: str, types: list[str]) -> dict[str, Any]:
    resp = api.put(f"/v1/webhook-endpoints/{endpoint_id}", {"url": url, "event_types": types})
    assert resp.status_code == 200 and "secret" in resp.json(), resp.text
    return dict(resp.json())


def deliveries(api: Api, endpoint_id: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries")["data"])


def retry_message(api: Api, endpoint_id: str) -> dict[str, Any]:
    """The queued message of the endpoint's (only) delivery, as the queue would bring it back."""
    [row] = api.container.billing_store.list_deliveries(endpoint_id, 10, None)[0]
    return {"delivery": row["id"], "endpoint": endpoint_id, "sk": row["sk"]}


# -- endpoints over the API -------------------------------------------------------------------------

def test_endpoint_crud_and_the_secret_shown_once(api: Api) -> None:
    created = endpoint(api, "ops", "https://hooks.example.com/meterbill", ["invoice.finalized", "invoice.paid"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and created["enabled"] is True
    assert created["event_types"] == ["invoice.finalized", "invoice.paid"]
    changed = api.put("/v1/webhook-endpoints/ops", {"url": "https://hooks.example.com/v2", "event_types": ["sync.failed"]})
    assert changed.status_code == 200 and "secret" not in changed.json()
    assert changed.json()["url"] == "https://hooks.example.com/v2"
    got = api.get("/v1/webhook-endpoints/ops")
    listed = api.get("/v1/webhook-endpoints")
    assert got.json()["event_types"] == ["sync.failed"] and [e["id"] for e in listed.json()["data"]] == ["ops"]
    gone = api.request("DELETE", "/v1/webhook-endpoints/ops")
    assert gone.status_code == 200 and gone.json()["enabled"] is False
    rotated = api.post("/v1/webhook-endpoints/ops/rotate-secret", {})
    assert rotated.status_code == 200 and rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != secret and rotated.json()["previous_secret_expires_at"] == "2026-11-06T12:00:00Z"
    for resp in api.responses:
        if resp.request.method == "GET":
            assert "whsec_" not in resp.text and secret not in resp.text   # never in a GET or a listing
    assert api.get("/v1/webhook-endpoints/ops/deliveries").json() == {"data": [], "next_cursor": None}
    assert error(api.get("/v1/webhook-endpoints/nope"), 404)["field"] == "id"


@pytest.mark.parametrize("body, field, words", [
    ({"url": "http://hooks.example.com/x", "event_types": ["invoice.paid"]}, "url", "https"),
    ({"url": "ftp://hooks.example.com/x", "event_types": ["invoice.paid"]}, "url", "https"),
    ({"url": "https://user:pw@hooks.example.com/x", "event_types": ["invoice.paid"]}, "url", "user"),
    ({"url": "https:///x", "event_types": ["invoice.paid"]}, "url", "host"),
    ({"url": "https://hooks.example.com/x", "event_types": ["invoice.sent"]}, "event_types", "invoice.finalized"),
    ({"url": "https://hooks.example.com/x", "event_types": []}, "event_types", ""),
    ({"url": "https://hooks.example.com/x"}, "event_types", ""),
    ({"url": "https://hooks.example.com/x", "event_types": ["invoice.paid"], "secret": "whsec_x"}, "secret", ""),
])
def test_bad_endpoints_are_400_naming_the_field(api: Api, body: dict[str, Any], field: str, words: str) -> None:
    err = error(api.put("/v1/webhook-endpoints/ops", body), 400)
    assert field in err["field"] and words in err["message"], err
    assert api.get("/v1/webhook-endpoints/ops").status_code == 404


def test_local_http_receivers_are_allowed(api: Api) -> None:
    for url in ("http://127.0.0.1:9000/hooks", "http://localhost/hooks"):
        assert api.put("/v1/webhook-endpoints/local", {"url": url, "event_types": ["invoice.paid"]}).status_code == 200
    assert error(api.post("/v1/webhook-endpoints/ops/rotate-secret", {}), 404)["field"] == "id"
    assert error(api.post("/v1/webhook-endpoints/local/rotate-secret", {"grace_hours": 1000}), 400)["field"].endswith("grace_hours")


# -- delivery ---------------------------------------------------------------------------------------

def test_a_finalized_invoice_is_one_signed_delivery(api: Api, app: Any, pipeline: Any, receiver: Receiver) -> None:
    secret = endpoint(api, "ops", receiver.url, ["invoice.finalized"])["secret"]
    endpoint(api, "other", receiver.url, ["invoice.paid"])      # not subscribed: nothing for it
    inv = closed_invoice(app, pipeline)
    pipeline.run()
    assert len(receiver.requests) == 1
    payload = receiver.verify(secret)
    assert payload["type"] == "invoice.finalized" and payload["id"].startswith("evt_")
    assert payload["data"]["invoice"]["id"] == inv["id"] and payload["data"]["invoice"]["number"] == "T-000001"
    assert payload["data"]["invoice"]["total"] == "61.51" and payload["timestamp"] == inv["numbered_at"]
    headers = receiver.requests[0][0]
    assert headers["webhook-id"].startswith("msg_") and headers["content-type"] == "application/json"
    [row] = deliveries(api, "ops")
    assert row["status"] == "delivered" and row["status_code"] == 200 and row["attempts"] == 1
    assert row["id"] == headers["webhook-id"] and row["event_type"] == "invoice.finalized"
    assert deliveries(api, "other") == []
    # the same event again (a re-driven outbox record, a redelivered message): no second delivery
    assert app.hook_delivery.dispatch({"outbox": "redrive", "action": "push", "invoice": inv["id"]}) == "queued 0"
    pipeline.run()
    assert len(receiver.requests) == 1


def test_500_then_200_is_delivered_once_more_with_the_same_webhook_id(api: Api, app: Any, pipeline: Any,
                                                                      receiver: Receiver, clock: FakeClock,
                                                                      sync_queues: dict[str, str]) -> None:
    secret = endpoint(api, "ops", receiver.url, ["invoice.finalized"])["secret"]
    receiver.answer((500, {}))
    closed_invoice(app, pipeline)
    pipeline.run()
    [row] = deliveries(api, "ops")
    assert row["status"] == "pending" and row["status_code"] == 500 and row["attempts"] == 1
    attrs = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=sync_queues["webhooks"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"   # back after its backoff, not busy-retried
    clock.advance(seconds=30)
    assert app.hook_delivery.dispatch(retry_message(api, "ops")) == "delivered"
    first, second = receiver.requests
    assert first[0]["webhook-id"] == second[0]["webhook-id"] and first[1] == second[1]   # same id, same body
    assert second[0]["webhook-timestamp"] == str(int(clock().timestamp()))               # signed when sent
    receiver.verify(secret)
    [row] = deliveries(api, "ops")
    assert row["status"] == "delivered" and row["attempts"] == 2 and row["error"] is None
    assert app.hook_delivery.dispatch(retry_message(api, "ops")) == "done"               # never sent twice
    assert len(receiver.requests) == 2


def test_retry_after_is_honoured(api: Api, app: Any, pipeline: Any, receiver: Receiver) -> None:
    endpoint(api, "ops", receiver.url, ["invoice.finalized"])
    receiver.answer((429, {"Retry-After": "120"}), (429, {"Retry-After": "120"}))
    closed_invoice(app, pipeline)
    pipeline.run()                           # the event, its delivery: 429, hidden for 120 s
    with pytest.raises(RetryLater) as later:
        app.hook_delivery.dispatch(retry_message(api, "ops"))
    assert later.value.after_s == 120
    [row] = deliveries(api, "ops")
    assert row["status"] == "pending" and row["status_code"] == 429 and row["attempts"] == 2


def test_410_fails_for_good_and_is_not_retried(api: Api, app: Any, pipeline: Any, receiver: Receiver,
                                               sync_queues: dict[str, str]) -> None:
    endpoint(api, "ops", receiver.url, ["invoice.finalized"])
    receiver.answer((410, {}))
    closed_invoice(app, pipeline)
    pipeline.run()
    [row] = deliveries(api, "ops")
    assert row["status"] == "failed" and row["status_code"] == 410 and "410" in row["error"]
    attrs = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=sync_queues["webhooks"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert app.hook_delivery.dispatch(retry_message(api, "ops")) == "done"
    assert len(receiver.requests) == 1


def test_rotation_signs_with_both_secrets_during_the_grace_period(api: Api, app: Any, pipeline: Any,
                                                                  receiver: Receiver, clock: FakeClock) -> None:
    old = endpoint(api, "ops", receiver.url, ["invoice.overdue"])["secret"]
    new = api.post("/v1/webhook-endpoints/ops/rotate-secret", {})
    assert new.status_code == 200, new.text
    new_secret = new.json()["secret"]
    app.hooks.emit("invoice.overdue", {"invoice": {"id": "in_1"}}, "in_1")
    pipeline.run()
    assert receiver.verify(old)["data"] == {"invoice": {"id": "in_1"}}
    assert receiver.verify(new_secret)["type"] == "invoice.overdue"
    assert len(receiver.requests[-1][0]["webhook-signature"].split(" ")) == 2
    clock.advance(hours=25)                  # the grace period is over: only the new secret signs
    app.hooks.emit("invoice.overdue", {"invoice": {"id": "in_2"}}, "in_2")
    pipeline.run()
    assert len(receiver.requests) == 2
    assert receiver.verify(new_secret)["data"] == {"invoice": {"id": "in_2"}}
    with pytest.raises(WebhookVerificationError):
        receiver.verify(old)
    for resp in api.responses:
        assert resp.request.method != "GET" or new_secret not in resp.text


def test_emit_is_idempotent_by_its_dedupe_key(api: Api, app: Any, pipeline: Any, receiver: Receiver) -> None:
    secret = endpoint(api, "ops", receiver.url, ["invoice.overdue"])["secret"]
    first = app.hooks.emit("invoice.overdue", {"invoice": {"id": "in_1", "amount_due": "12.50"}}, "in_1#1")
    assert app.hooks.emit("invoice.overdue", {"invoice": {"id": "in_1"}}, "in_1#1") == first
    pipeline.run()
    assert len(receiver.requests) == 1
    assert receiver.verify(secret)["data"]["invoice"]["amount_due"] == "12.50"
    with pytest.raises(Exception) as bad:
        app.hooks.emit("invoice.sent", {}, "x")
    assert getattr(bad.value, "field", None) == "event_type"


def test_a_failed_sync_emits_sync_failed(api: Api, app: Any, pipeline: Any, receiver: Receiver) -> None:
    secret = endpoint(api, "ops", receiver.url, ["sync.failed"])["secret"]
    inv = closed_invoice(app, pipeline)
    pipeline.run()                           # books fails: its sync.failed is a new outbox record …
    pipeline.run()                           # … fanned out and delivered
    assert app.sync.sync_state(inv["id"])["books"]["status"] == "failed"
    assert len(receiver.requests) == 1
    payload = receiver.verify(secret)
    assert payload["type"] == "sync.failed"
    assert payload["data"]["invoice_id"] == inv["id"] and payload["data"]["integration"] == "books"
    assert "currency" in payload["data"]["reason"]


def test_a_disabled_endpoint_receives_nothing(api: Api, app: Any, pipeline: Any, receiver: Receiver) -> None:
    endpoint(api, "ops", receiver.url, ["invoice.overdue"])
    assert api.request("DELETE", "/v1/webhook-endpoints/ops").status_code == 200
    app.hooks.emit("invoice.overdue", {"invoice": {"id": "in_1"}}, "in_1")
    pipeline.run()
    assert receiver.requests == [] and deliveries(api, "ops") == []
    assert json.loads(api.get("/v1/webhook-endpoints/ops").text)["enabled"] is False


def test_the_webhooks_function_may_do_what_delivering_does(api: Api, app: Any, pipeline: Any, receiver: Receiver,
                                                           ddb: Any) -> None:
    from tests.integration.test_iam_actions import Recorder, granted

    endpoint(api, "ops", receiver.url, ["invoice.finalized", "invoice.overdue"])
    receiver.answer((500, {}))
    closed_invoice(app, pipeline)
    app.hooks.emit("invoice.overdue", {"invoice": {"id": "in_1"}}, "in_1")
    pipeline.outbox.drain()
    recorder = Recorder(ddb)
    with recorder.recording():
        pipeline.workers["webhooks"].drain()
    assert len(receiver.requests) == 2
    assert recorder.calls and recorder.calls <= granted("WebhooksDispatchFunction"), \
        recorder.calls - granted("WebhooksDispatchFunction")
