"""Outbound webhooks, the pure parts: URL and event-type rules, deterministic ids, the retry
delay, the event body, secret activity and rotation format, and the plugin's signing and
classification (no sockets: the HTTP pool is a stand-in)."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
import urllib3
from standardwebhooks import Webhook

from integrations.webhooks.plugin import DeliveryRefused, WebhooksIntegration
from meterbill.domain.errors import InvalidField
from meterbill.domain.webhooks import (EVENT_TYPES, RESERVED, RETRY_BASE_S, RETRY_MAX_S, body, check_event_types,
                                       check_url, event_id, event_record, message_id, retry_delay)
from meterbill.integration.contract import Permanent, Retryable
from meterbill.integration.registry import contract_problems
from meterbill.integration.settings import IntegrationSettings
from meterbill.services.webhook_endpoints import active, new_secret

AT = datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "https://hooks.example.com:8443/a?b=c",
                                 "http://127.0.0.1:9000/hooks", "http://localhost/hooks", "http://[::1]:80/x"])
def test_accepted_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url, words", [
    ("http://hooks.example.com/x", "https"), ("http://127.0.0.2/x", "https"), ("ftp://a.example/x", "https"),
    ("https://u:p@a.example/x", "user"), ("https:///x", "host"), ("https://a.example/x#f", "fragment"),
    ("https://a.example:99999/x", "not a URL"), ("", "https URL"), ("https://a.example/" + "x" * 2048, "2048"),
])
def test_refused_urls_name_the_field(url: str, words: str) -> None:
    with pytest.raises(InvalidField) as err:
        check_url(url)
    assert err.value.field == "url" and words in str(err.value)


def test_event_types_are_from_the_fixed_list() -> None:
    assert check_event_types(["invoice.paid", "invoice.paid", "sync.failed"]) == ["invoice.paid", "sync.failed"]
    for bad in ([], ["invoice.sent"], [RESERVED[0]]):   # reserved types are not subscribable until added
        with pytest.raises(InvalidField) as err:
            check_event_types(bad)
        assert err.value.field == "event_types"
    assert len(EVENT_TYPES) == 8 and not set(EVENT_TYPES) & set(RESERVED)


def test_ids_are_deterministic_and_distinct() -> None:
    evt = event_id("invoice.finalized", "in_1")
    assert evt == event_id("invoice.finalized", "in_1") and evt.startswith("evt_")
    assert evt != event_id("invoice.paid", "in_1") != event_id("invoice.finalized", "in_2")
    msg = message_id(evt, "ops")
    assert msg == message_id(evt, "ops") and msg.startswith("msg_") and msg != message_id(evt, "other")
    assert event_id("a.b", "c\x1fd") != event_id("a.b\x1fc", "d")      # parts cannot run together


def test_retry_delay_doubles_and_honours_retry_after() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [RETRY_BASE_S, 2 * RETRY_BASE_S, 4 * RETRY_BASE_S]
    assert retry_delay(40) == RETRY_MAX_S
    assert retry_delay(1, 120) == 120 and retry_delay(1, 0) == 1 and retry_delay(1, 10 ** 9) == RETRY_MAX_S


def test_the_body_is_exact_compact_json() -> None:
    text = body("evt_1", "invoice.paid", "2026-11-05T12:00:00Z", {"invoice": {"total": Decimal("61.51"),
                                                                               "lines": Decimal("3")}})
    assert text == ('{"id":"evt_1","type":"invoice.paid","timestamp":"2026-11-05T12:00:00Z",'
                    '"data":{"invoice":{"total":"61.51","lines":3}}}')


def test_event_records_refuse_unknown_types_and_empty_keys() -> None:
    rec = event_record("sync.failed", "in_1#stripe##tok", {"reason": "x"})
    assert rec["event_id"] == event_id("sync.failed", "in_1#stripe##tok")
    with pytest.raises(InvalidField) as err:
        event_record("invoice.sent", "k", {})
    assert err.value.field == "event_type"
    with pytest.raises(InvalidField) as err:
        event_record("invoice.paid", "", {})
    assert err.value.field == "dedupe_key"


def test_secrets_are_standard_webhooks_secrets_and_expire() -> None:
    secret = new_secret(lambda n: b"\x01" * n)
    assert secret == "whsec_" + base64.b64encode(b"\x01" * 32).decode()
    Webhook(secret)   # the library takes it
    secrets = [{"secret": "new"}, {"secret": "old", "expires_at": "2026-11-06T12:00:00Z"}]
    assert [s["secret"] for s in active(secrets, "2026-11-06T11:59:59Z")] == ["new", "old"]
    assert [s["secret"] for s in active(secrets, "2026-11-06T12:00:00Z")] == ["new"]


# -- the plugin ---------------------------------------------------------------------------------------

class Pool:
    """urllib3.PoolManager stand-in: answers ``status`` (or raises ``error``), keeps the requests."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None,
                 error: Exception | None = None) -> None:
        self.status, self.headers, self.error = status, headers or {}, error
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kw: Any) -> Any:
        self.sent.append({"method": method, "url": url, **kw})
        if self.error:
            raise self.error
        return urllib3.HTTPResponse(body=io.BytesIO(b"gone for good"), status=self.status,
                                    headers=self.headers, preload_content=False)


def plugin(pool: Pool, **settings: str) -> WebhooksIntegration:
    return WebhooksIntegration(IntegrationSettings("webhooks", settings), http=pool)


def test_the_plugin_follows_the_contract() -> None:
    assert contract_problems(WebhooksIntegration) == []
    p = plugin(Pool())
    assert p.validate_config(IntegrationSettings("webhooks", {"timeout_s": "31"}))[0].field == "timeout_s"
    assert p.validate_config(IntegrationSettings("webhooks", {"timeout_s": "2.5"})) == []
    inv = {"id": "in_1", "numbered_at": "2026-11-01T00:05:00Z", "total": "1.00"}
    ref = p.push_invoice(inv, p.upsert_customer({"id": "acme"}), "key")
    assert ref.id == event_id("invoice.finalized", "in_1") and ref.number == "invoice.finalized"
    assert p.event("paid", {**inv, "paid_at": "2026-11-09T00:00:00Z"})[2] == "2026-11-09T00:00:00Z"
    note = {"id": "cn_1", "invoice_id": "in_1", "created_at": "2026-11-10T00:00:00Z", "total": "1.00"}
    assert p.push_credit_note(note, ref, "k").number == "credit_note.created"
    assert p.find_invoice(inv, ref) is None and p.validate_invoice(inv) == []


def test_the_payment_that_settles_an_invoice_is_its_invoice_paid_event() -> None:
    """A payment record (offline, or Stripe's collection) that settled the invoice is `invoice.paid`,
    with the same event id as a `paid` transition (receivers see one event); a partial payment, a
    dunning reminder or an overdue notice before `overdue_at` exists are no event of their own."""
    p = plugin(Pool())
    inv = {"id": "in_1", "status": "paid", "paid_at": "2026-11-09T00:00:00Z", "total": "1.00"}
    assert p.event("payment", inv)[:3] == p.event("paid", inv)[:3] == ("invoice.paid", "in_1", "2026-11-09T00:00:00Z")
    assert p.event("payment", {**inv, "status": "final"}) is None
    assert p.event("reminder", {**inv, "status": "final"}) is None
    overdue = p.event("overdue", {**inv, "status": "final", "overdue_at": "2026-11-20T00:00:00Z"})
    assert overdue is not None and overdue[0] == "invoice.overdue" and overdue[2] == "2026-11-20T00:00:00Z"


def test_a_delivery_is_signed_with_every_active_secret() -> None:
    pool = Pool()
    old, new = new_secret(lambda n: b"\x01" * n), new_secret(lambda n: b"\x02" * n)
    text = body("evt_1", "invoice.paid", "2026-11-05T12:00:00Z", {})
    assert plugin(pool, timeout_s="3").deliver("https://h.example/x", [new, old], "msg_1", AT, text) == 200
    [sent] = pool.sent
    headers = sent["headers"]
    assert sent["redirect"] is False and sent["retries"] is False and sent["timeout"].read_timeout == 3
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(int(AT.timestamp()))
    sigs = headers["webhook-signature"].split(" ")
    assert sigs == [Webhook(new).sign("msg_1", AT, text), Webhook(old).sign("msg_1", AT, text)]
    assert json.loads(sent["body"]) == json.loads(text)


@pytest.mark.parametrize("status, headers, kind, after", [
    (500, {}, Retryable, None), (503, {"Retry-After": "7"}, Retryable, 7), (429, {"Retry-After": "30"}, Retryable, 30),
    (408, {}, Retryable, None), (410, {}, Permanent, None), (400, {}, Permanent, None), (401, {}, Permanent, None),
    (301, {"Location": "https://elsewhere.example"}, Permanent, None),
])
def test_refusals_are_classified(status: int, headers: dict[str, str], kind: type, after: float | None) -> None:
    p = plugin(Pool(status, headers))
    with pytest.raises(DeliveryRefused) as refused:
        p.deliver("https://h.example/x", [new_secret()], "msg_1", AT, "{}")
    verdict = p.classify(refused.value)
    assert isinstance(verdict, kind) and str(status) in verdict.reason
    if isinstance(verdict, Retryable):
        assert verdict.after_s == after


def test_no_answer_is_retryable() -> None:
    p = plugin(Pool(error=urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")))
    with pytest.raises(urllib3.exceptions.HTTPError) as err:
        p.deliver("https://h.example/x", [new_secret()], "msg_1", AT, "{}")
    assert isinstance(p.classify(err.value), Retryable)


def test_alerts_go_through_the_outbound_webhooks_when_they_are_enabled() -> None:
    """Anomaly and budget alerts (bootstrap.alert_sink): the webhooks' emit when the `webhooks`
    integration runs, else the configured URL, else nothing; their event types are subscribable."""
    from meterbill.adapters.webhook_alerts import WebhookAlertSink
    from meterbill.bootstrap import alert_sink
    from meterbill.config import Settings

    hooks = object()
    assert alert_sink(Settings.from_env({"METERBILL_INTEGRATIONS": "webhooks",
                                         "METERBILL_ALERT_WEBHOOK_URL": "https://alerts.example/x"}), hooks) is hooks
    assert isinstance(alert_sink(Settings.from_env({"METERBILL_ALERT_WEBHOOK_URL": "https://alerts.example/x"}), hooks),
                      WebhookAlertSink)
    assert alert_sink(Settings.from_env({}), hooks) is None
    from meterbill.services.anomalies import EVENT_TYPE
    assert check_event_types([EVENT_TYPE, "budget.threshold_crossed"]) == ["anomaly.detected", "budget.threshold_crossed"]
