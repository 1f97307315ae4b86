"""Anomaly scans on moto: stored once across scans, listed with filters, alerted once; the
scheduled function's IAM statements allow what it does; the webhook sink POSTs JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.adapters.webhook_alerts import AlertNotDelivered, WebhookAlertSink
from meterbill.api.app import build_app
from meterbill.domain.meters import BucketState
from meterbill.ports import UsageItem
from meterbill.services.anomalies import AnomalyService
from tests.conftest import standard_catalog
from tests.integration.test_api import SECRETS, Api
from tests.integration.test_iam_actions import Recorder, granted

START = datetime(2026, 10, 1, tzinfo=timezone.utc)   # acme's start (standard_catalog), a Thursday
SPIKE = datetime(2026, 11, 5, 10, tzinfo=timezone.utc)


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.failing = False

    def emit(self, event_type: str, payload: Mapping[str, Any], dedupe_key: str) -> None:
        if self.failing:
            raise AlertNotDelivered("webhook answered 503")
        self.sent.append((event_type, dict(payload), dedupe_key))


def office_usage(container: Any, customer: str = "acme", until: datetime = SPIKE + timedelta(hours=2),
                 spike: datetime | None = SPIKE) -> None:
    """Hourly tokens from START: 100 in working hours on weekdays, 20 at night, 10 at weekends;
    900 at ``spike``. Written as the aggregator writes usage items."""
    at = START
    while at < until:
        value = 10 if at.weekday() >= 5 else 100 if 8 <= at.hour < 18 else 20
        if at == spike:
            value = 900
        start_s = int(at.timestamp())
        item = UsageItem((customer, start_s, "tokens", ""), {start_s: BucketState(count=1, sum=Decimal(value))},
                         version=1)
        assert container.billing_store.put_usage_item(item, None)
        at += timedelta(hours=1)


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def anomalies(container: Any, clock: Any, sink: FakeSink) -> AnomalyService:
    return AnomalyService(container.billing_store, container.catalog, clock, sink)


def test_a_scan_stores_each_anomaly_once_and_alerts_once(container: Any, clock: Any, anomalies: AnomalyService,
                                                          sink: FakeSink) -> None:
    standard_catalog(container)
    office_usage(container)
    first = anomalies.request("2026-11-04T12:00:00Z", "2026-11-05T12:00:00Z", "acme")
    assert (first["found"], first["created"], first["alerts_sent"]) == (1, 1, 1)
    (a,) = first["anomalies"]
    assert (a["kind"], a["meter"], a["start"]) == ("spike", "tokens", "2026-11-05T10:00:00Z")
    again = anomalies.request("2026-11-05T00:00:00Z", "2026-11-05T12:00:00Z", "acme")   # overlapping re-scan
    assert (again["found"], again["created"], again["alerts_sent"]) == (1, 0, 0)
    rows, _ = anomalies.list("acme", None, None, None, 50, None)
    assert len(rows) == 1 and len(sink.sent) == 1
    event_type, payload, key = sink.sent[0]
    assert event_type == "anomaly.detected" and key == rows[0]["id"] == payload["id"]
    assert (rows[0]["observed"], rows[0]["start"], rows[0]["end"]) == ("900", "2026-11-05T10:00:00Z",
                                                                        "2026-11-05T11:00:00Z")
    assert Decimal(rows[0]["expected_low"]) < Decimal(rows[0]["expected"]) < Decimal(rows[0]["expected_high"]) < 900
    assert rows[0]["alert"] == "sent" and Decimal(rows[0]["score"]) > Decimal("4.5")


def test_an_alert_that_did_not_go_out_is_sent_by_the_next_scan(container: Any, clock: Any,
                                                                anomalies: AnomalyService, sink: FakeSink) -> None:
    standard_catalog(container)
    office_usage(container)
    sink.failing = True
    result = anomalies.request("2026-11-05T00:00:00Z", "2026-11-05T12:00:00Z", "acme")
    assert (result["created"], result["alerts_failed"]) == (1, 1)
    assert anomalies.list("acme", None, None, None, 50, None)[0][0]["alert"] == "pending"
    sink.failing = False
    later = anomalies.scheduled(datetime(2026, 11, 5, 12, 5, tzinfo=timezone.utc))
    assert later["alerts_redriven"] == 1 and later["created"] == 0
    assert len(sink.sent) == 1
    assert anomalies.list("acme", None, None, None, 50, None)[0][0]["alert"] == "sent"
    assert anomalies.scheduled(datetime(2026, 11, 5, 12, 10, tzinfo=timezone.utc))["alerts_redriven"] == 0
    assert len(sink.sent) == 1


def test_a_silence_grows_under_one_key_across_scheduled_scans(container: Any, clock: Any,
                                                               anomalies: AnomalyService, sink: FakeSink) -> None:
    standard_catalog(container)
    office_usage(container, until=datetime(2026, 11, 5, 9, tzinfo=timezone.utc), spike=None)   # stops at 09:00
    for hour in (12, 13, 14, 15):
        anomalies.scheduled(datetime(2026, 11, 5, hour, 1, tzinfo=timezone.utc))
    rows, _ = anomalies.list("acme", None, "silent", None, 50, None)
    assert [(r["start"], r["end"]) for r in rows] == [("2026-11-05T09:00:00Z", "2026-11-05T15:00:00Z")]
    assert len(sink.sent) == 1


def test_get_anomalies_filters_by_customer_meter_kind_and_since(container: Any, clock: Any, sink: FakeSink) -> None:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    c = standard_catalog(container)
    c.put_customer("beta", {"name": "Beta", "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                            "billing_anchor": "2026-10-01T00:00:00Z"})
    office_usage(container)
    office_usage(container, "beta", spike=SPIKE - timedelta(days=1))
    api = Api(build_app(HttpResolverLocal, lambda: container), container)
    scanned = api.post("/v1/anomaly-scans", {"from": "2026-11-03T00:00:00Z", "to": "2026-11-05T12:00:00Z"})
    assert scanned.status_code == 200, scanned.text
    assert scanned.json()["customers"] == 2 and scanned.json()["created"] == 2
    everyone = api.get("/v1/anomalies", key="read").json()["data"]
    assert [(r["customer"], r["start"]) for r in everyone] == [("acme", "2026-11-05T10:00:00Z"),
                                                                ("beta", "2026-11-04T10:00:00Z")]
    assert [r["customer"] for r in api.get("/v1/anomalies", params={"customer": "beta"}, key="read").json()["data"]] \
        == ["beta"]
    since = api.get("/v1/anomalies", params={"since": "2026-11-05T00:00:00Z"}, key="read").json()["data"]
    assert [r["customer"] for r in since] == ["acme"]
    assert api.get("/v1/anomalies", params={"kind": "drop"}, key="read").json()["data"] == []
    assert len(api.get("/v1/anomalies", params={"kind": "spike", "meter": "tokens"}, key="read").json()["data"]) == 2
    assert api.get("/v1/anomalies", params={"meter": "calls"}, key="read").json()["data"] == []
    first = api.get("/v1/anomalies", params={"limit": 1}, key="read").json()
    second = api.get("/v1/anomalies", params={"limit": 1, "cursor": first["next_cursor"]}, key="read").json()
    assert [r["customer"] for r in first["data"] + second["data"]] == ["acme", "beta"]
    bad = api.get("/v1/anomalies", params={"kind": "bump"}, key="read")
    assert bad.status_code == 400 and "kind" in bad.text
    bad = api.post("/v1/anomaly-scans", {"from": "2025-01-01T00:00:00Z", "to": "2026-11-05T00:00:00Z"})
    assert bad.status_code == 400 and "from" in bad.text
    assert api.post("/v1/anomaly-scans", {"customer": "nobody"}).status_code == 404
    assert api.post("/v1/anomaly-scans", {}, key="read").status_code == 403


def test_the_anomalies_function_may_do_what_a_scheduled_scan_does(container: Any, ddb: Any, clock: Any,
                                                                  sink: FakeSink) -> None:
    standard_catalog(container)
    office_usage(container, until=datetime(2026, 11, 5, 14, tzinfo=timezone.utc))
    sink.failing = True
    service = AnomalyService(container.billing_store, container.catalog, clock, sink)
    recorder = Recorder(ddb)
    try:
        with recorder.recording():
            service.scheduled(datetime(2026, 11, 5, 12, 5, tzinfo=timezone.utc))   # stored, alert pending
            sink.failing = False
            service.scheduled(datetime(2026, 11, 5, 13, 5, tzinfo=timezone.utc))   # redriven, marked sent
    finally:
        ddb.meta.events.unregister("before-parameter-build.dynamodb", recorder._record)
    assert len(sink.sent) == 1
    missing = recorder.calls - granted("AnomaliesFunction")
    assert not missing, f"AnomaliesFunction lacks {sorted(missing)}"
    assert not any(table == "EventsTable" for _, table in recorder.calls)   # buckets only, never raw events


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], dict[str, Any]]] = []
    status = 204

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((dict(self.headers), json.loads(body)))
        self.send_response(_Receiver.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_webhook_sink_posts_json_with_the_dedupe_key() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        WebhookAlertSink(url, timeout_s=2).emit("anomaly.detected", {"id": "an_1", "kind": "spike"}, "an_1")
        headers, body = _Receiver.received[-1]
        assert body == {"type": "anomaly.detected", "id": "an_1", "data": {"id": "an_1", "kind": "spike"}}
        assert headers["Idempotency-Key"] == "an_1" and headers["Content-Type"] == "application/json"
        _Receiver.status = 400
        with pytest.raises(AlertNotDelivered, match="400"):
            WebhookAlertSink(url, timeout_s=2).emit("anomaly.detected", {}, "an_2")
    finally:
        _Receiver.status = 204
        server.shutdown()


def test_the_cli_scans_every_customer_over_history(container: Any, clock: Any, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from meterbill import cli

    standard_catalog(container)
    office_usage(container)
    monkeypatch.setattr("meterbill.bootstrap.utc_now", clock)   # never today's date
    monkeypatch.setenv("METERBILL_EVENTS_TABLE", "t-events")
    monkeypatch.setenv("METERBILL_BILLING_TABLE", "t-billing")
    monkeypatch.delenv("METERBILL_ALERT_WEBHOOK_URL", raising=False)
    args = ["anomalies", "scan", "--aws", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-05T12:00:00Z"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["customers"], result["created"], result["alerts_sent"]) == (1, 1, 0)   # no webhook configured
    assert [a["start"] for a in result["anomalies"]] == ["2026-11-05T10:00:00Z"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 0
    (row,) = container.anomalies.list(None, None, None, None, 50, None)[0]
    assert row["alert"] == "none"
    assert cli.main([*args[:3], "--customer", "nobody"]) == 1


def test_anomalies_found_in_old_history_are_stored_but_not_alerted(container: Any, clock: Any,
                                                                   anomalies: AnomalyService, sink: FakeSink) -> None:
    standard_catalog(container)
    office_usage(container, spike=SPIKE - timedelta(days=2))
    result = anomalies.request("2026-11-01T00:00:00Z", "2026-11-05T12:00:00Z", "acme")
    assert (result["created"], result["alerts_sent"]) == (1, 0) and sink.sent == []
    assert anomalies.list("acme", None, None, None, 50, None)[0][0]["alert"] == "none"


def test_the_scheduled_function_scans_the_hours_before_its_tick(container: Any, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    import meterbill.bootstrap as bootstrap_mod
    from functions import anomalies as function
    from meterbill.local.stack import LambdaContext

    standard_catalog(container)
    office_usage(container)
    monkeypatch.setattr(bootstrap_mod, "bootstrap", lambda *a, **k: container)
    bootstrap_mod.default_container.cache_clear()
    try:
        context = LambdaContext(function_name="meterbill-anomalies", aws_request_id="req-1",
                                invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:meterbill-anomalies")
        tick = {"scheduled_time": "2026-11-05T12:10:00Z"}
        result = function.handler(tick, context)
        assert (result["from"], result["to"], result["created"]) == ("2026-11-05T09:00:00Z", "2026-11-05T12:00:00Z", 1)
        assert "anomalies" not in result
        assert function.handler(tick, context)["created"] == 0    # a retried tick stores nothing twice
    finally:
        bootstrap_mod.default_container.cache_clear()
