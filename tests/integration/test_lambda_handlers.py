"""The real Lambda entry points (functions/*.py) with recorded AWS events, on moto in-process.

The composition root is redirected to the test container (same tables from template.yaml,
controllable clock) by patching ``meterbill.bootstrap.bootstrap`` and clearing the cached
``default_container``; one test instead points the settings at the fixture tables through the
environment, exactly as the SAM template configures the functions."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from meterbill.local.stack import LambdaContext
from tests.conftest import ev, standard_catalog

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
KEYS = {"admin": "mbtest_lambda_admin_0123456789abcdef", "read": "mbtest_lambda_read_0123456789abcdef",
        "ingest": "mbtest_lambda_ingest_0123456789abcdef"}


def recorded(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def ctx(name: str) -> LambdaContext:
    return LambdaContext(function_name=name, aws_request_id=f"req-{name}",
                         invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}")


@pytest.fixture
def wired(container: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Every entry point's default_container() answers the test container."""
    import meterbill.bootstrap as bootstrap_mod

    for scope, secret in KEYS.items():
        container.keys.create([scope], name=f"lambda {scope}", secret=secret)
    monkeypatch.setattr(bootstrap_mod, "bootstrap", lambda *a, **k: container)
    bootstrap_mod.default_container.cache_clear()
    yield container
    bootstrap_mod.default_container.cache_clear()


@pytest.fixture
def priced(wired: Any) -> Any:
    standard_catalog(wired)
    return wired


def api_call(event: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    from functions import api

    resp = api.handler(event, ctx("meterbill-api"))
    body = resp.get("body")
    if resp.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return resp["statusCode"], resp.get("headers", {}), json.loads(body) if body else None


# -- HTTP API (API Gateway HTTP API, payload v2) -------------------------------------------
def test_api_handler_ingests_recorded_post(priced: Any) -> None:
    status, headers, body = api_call(recorded("apigw_post_events.json"))
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert (body["received"], body["accepted"], body["rejected"]) == (3, 3, 0)
    stored = priced.events_store.get("lambda-2")
    assert (stored["customer"], stored["properties"]) == ("acme", {"tokens": 700})
    # API Gateway redelivers / the client retries: counted once
    status, _, again = api_call(recorded("apigw_post_events.json"))
    assert status == 200 and (again["accepted"], again["duplicates"]) == (0, 3)


def test_api_handler_partial_batch_is_207(priced: Any) -> None:
    event = recorded("apigw_post_events.json")
    doc = json.loads(event["body"])
    doc["events"][1]["timestamp"] = "2027-01-01T00:00:00Z"
    event["body"] = json.dumps(doc)
    status, _, body = api_call(event)
    assert status == 207, body
    assert [(e["index"], e["id"], e["field"], e["code"]) for e in body["errors"]] == [
        (1, "lambda-2", "timestamp", "future_timestamp")]


def test_api_handler_decodes_base64_body(wired: Any) -> None:
    event = recorded("apigw_put_meter.json")
    assert event["isBase64Encoded"] is True
    status, _, body = api_call(event)
    assert status == 200, body
    assert (body["code"], body["aggregation"], body["property"], body["name"]) == ("tokens", "sum", "tokens", "Tokens")
    assert wired.catalog.get_meter("tokens")["event_type"] == "api.call"


def test_api_handler_without_key_is_401_with_challenge(priced: Any) -> None:
    event = recorded("apigw_post_events.json")
    del event["headers"]["authorization"]
    status, headers, body = api_call(event)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert {k.lower(): v for k, v in headers.items()}["www-authenticate"].startswith("Bearer")
    assert priced.events_store.get("lambda-1") is None


def test_api_handler_wrong_scope_is_403(priced: Any) -> None:
    event = recorded("apigw_get_invoices.json")
    event["headers"]["authorization"] = f"Bearer {KEYS['ingest']}"
    status, _, body = api_call(event)
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert KEYS["ingest"] not in json.dumps(body)


def test_api_handler_query_string_and_invoice(priced: Any) -> None:
    status, _, body = api_call(recorded("apigw_get_invoices.json"))
    assert status == 200 and body == {"data": [], "next_cursor": None}
    api_call(recorded("apigw_post_events.json"))
    drain_stream(priced)
    priced.billing.run(datetime.fromisoformat(NOV))
    status, _, body = api_call(recorded("apigw_get_invoices.json"))
    assert status == 200, body
    [inv] = body["data"]
    # 1500 tokens: 1000 x 0.01 + 500 x 0.005 = 12.50; 3 calls x 0.001 = 0.003 -> 0.00
    assert [(ln.get("meter"), ln["amount"]) for ln in inv["lines"]] == [
        (None, "49.00"), ("tokens", "12.50"), ("calls", "0.00")]
    assert (inv["total"], inv["customer"]["email"], inv["period"]["start"]) == ("61.50", "ap@acme.example", OCT)


def test_api_handler_unknown_route_is_404(wired: Any) -> None:
    event = recorded("apigw_get_invoices.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v2/invoices"
    status, _, body = api_call(event)
    assert status == 404 and body["error"]["code"] == "not_found"


def test_api_handler_settings_from_environment(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without patching the composition root: table names come from the env, as on Lambda."""
    import meterbill.bootstrap as bootstrap_mod

    monkeypatch.setenv("METERBILL_EVENTS_TABLE", "t-events")
    monkeypatch.setenv("METERBILL_BILLING_TABLE", "t-billing")
    monkeypatch.delenv("METERBILL_DYNAMODB_ENDPOINT", raising=False)
    bootstrap_mod.default_container.cache_clear()
    try:
        real = bootstrap_mod.default_container()
        assert (real.settings.events_table, real.settings.billing_table) == ("t-events", "t-billing")
        real.keys.create(["admin"], secret=KEYS["admin"])
        status, _, body = api_call(recorded("apigw_put_meter.json"))
        assert status == 200, body
        item = ddb.get_item(TableName="t-billing", Key={"pk": {"S": "METER#tokens"}, "sk": {"S": "METER"}})
        assert item["Item"]["event_type"]["S"] == "api.call"
        event = recorded("apigw_get_invoices.json")
        event["headers"]["authorization"] = f"Bearer {KEYS['admin']}"
        event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/meters/tokens"
        event["rawQueryString"], event["queryStringParameters"] = "", None
        status, _, body = api_call(event)
        assert status == 200 and body["code"] == "tokens"
    finally:
        bootstrap_mod.default_container.cache_clear()


# -- aggregator (DynamoDB stream -> usage buckets) -----------------------------------------
def stream_records(ddb: Any, table: str = "t-events") -> list[dict[str, Any]]:
    """The table's real (moto) stream records, shaped as Lambda's event source mapping delivers them."""
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    out = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            resp = streams.get_records(ShardIterator=it, Limit=1000)
            if not resp["Records"]:
                break
            for rec in resp["Records"]:
                data = dict(rec["dynamodb"])
                created = data.get("ApproximateCreationDateTime")
                if isinstance(created, datetime):
                    data["ApproximateCreationDateTime"] = int(created.timestamp())
                out.append({"eventID": rec["eventID"], "eventName": rec["eventName"],
                            "eventVersion": rec.get("eventVersion", "1.1"), "eventSource": "aws:dynamodb",
                            "awsRegion": "us-east-1", "dynamodb": data, "eventSourceARN": arn})
            it = resp.get("NextShardIterator")
    return out


def drain_stream(container: Any) -> None:
    from functions import aggregator

    records = stream_records(container.events_store._client)
    result = aggregator.handler({"Records": records}, ctx("meterbill-aggregator"))
    assert result == {"batchItemFailures": []}


def usage_tokens(container: Any) -> tuple[str, str]:
    series = container.usage.series("acme", OCT, NOV, None, "day")
    total = {m["meter"]: sum(int(p["value"]) for p in m["points"]) for m in series["meters"]}
    return str(total.get("tokens", 0)), str(total.get("calls", 0))


def ingest(container: Any, *events: dict[str, Any]) -> None:
    res = container.ingest.ingest(json.dumps({"events": list(events)}), "application/json")
    assert res.accepted == len(events), res


def test_aggregator_applies_real_stream_batch_once(priced: Any, ddb: Any) -> None:
    from functions import aggregator

    ingest(priced, *[ev(i, ts=f"2026-10-{1 + i:02d}T05:00:00Z", tokens=10 * i) for i in range(8)])
    records = stream_records(ddb)
    assert len(records) == 8 and {r["eventName"] for r in records} == {"INSERT"}
    event = {"Records": records}
    assert aggregator.handler(event, ctx("meterbill-aggregator")) == {"batchItemFailures": []}
    assert usage_tokens(priced) == ("280", "8")
    # Lambda may deliver the same batch again (e.g. after a timeout): nothing counts twice
    assert aggregator.handler(copy.deepcopy(event), ctx("meterbill-aggregator")) == {"batchItemFailures": []}
    assert usage_tokens(priced) == ("280", "8")


def test_aggregator_empty_batch(wired: Any) -> None:
    from functions import aggregator

    assert aggregator.handler({"Records": []}, ctx("meterbill-aggregator")) == {"batchItemFailures": []}


def test_aggregator_reports_first_record_when_a_bucket_write_fails(priced: Any, ddb: Any) -> None:
    from functions import aggregator

    ingest(priced, *[ev(i, ts=f"2026-10-{1 + i:02d}T05:00:00Z", tokens=1) for i in range(6)])
    records = stream_records(ddb)
    writes = {"n": 0}

    def fail_third_bucket_write(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name in ("PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem") and \
                "t-billing" in json.dumps(params, default=str):
            writes["n"] += 1
            if writes["n"] == 3:
                raise ConnectionError("simulated DynamoDB outage during a bucket write")

    ddb.meta.events.register("before-parameter-build.dynamodb", fail_third_bucket_write)
    try:
        result = aggregator.handler({"Records": records}, ctx("meterbill-aggregator"))
    finally:
        ddb.meta.events.unregister("before-parameter-build.dynamodb", fail_third_bucket_write)
    assert writes["n"] >= 3
    assert result == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    # Lambda retries the whole batch from that record: applied buckets skip themselves
    assert aggregator.handler({"Records": records}, ctx("meterbill-aggregator")) == {"batchItemFailures": []}
    assert usage_tokens(priced) == ("6", "6")


# -- close periods (EventBridge Scheduler) -> close queue -> close worker ----------------------
def close_queue(container: Any) -> Any:
    """The close queue consumed by the deployed close worker's handler (on the wired container)."""
    from functions import close_worker
    from meterbill.local.stack import QueueWorker

    return QueueWorker(boto3.client("sqs", region_name="us-east-1"), container.settings.close_queue_url,
                       close_worker.handler)


def test_close_periods_handler_dispatches_the_scheduled_run(priced: Any, ddb: Any, clock: Any) -> None:
    from functions import close_periods

    ingest(priced, *[ev(i, ts="2026-10-15T00:00:00Z", tokens=300) for i in range(5)])
    drain_stream(priced)
    run = close_periods.handler(recorded("scheduler_close_periods.json"), ctx("meterbill-close-periods"))
    assert (run["id"], run["as_of"], run["trigger"]) == ("sched_20261105T120000Z", "2026-11-05T12:00:00Z", "schedule")
    assert (run["status"], run["queued"], run["closed"]) == ("running", 1, 0)
    # Scheduler retries the same tick: the same run, nothing queued twice
    again = close_periods.handler(recorded("scheduler_close_periods.json"), ctx("meterbill-close-periods"))
    assert (again["id"], again["queued"]) == (run["id"], 1)
    assert close_queue(priced).drain() == 1
    done = priced.billing_runs.view(run["id"])
    assert (done["status"], done["closed"], done["failed"], done["failures"]) == ("finished", 1, 0, [])
    [inv] = priced.billing_store.list_invoices("acme", 10, None)[0]
    assert (inv["number"], inv["total"], inv["period"]["start"]) == ("T-000001", "61.51", OCT)
    # once November has ended, the next tick closes it
    clock.advance(days=26)
    later = close_periods.handler({"scheduled_time": "2026-12-01T12:00:00Z"}, ctx("meterbill-close-periods"))
    close_queue(priced).drain()
    assert priced.billing_runs.view(later["id"])["closed"] == 1
    numbers = sorted(i["number"] for i in priced.billing_store.list_invoices("acme", 10, None)[0])
    assert numbers == ["T-000001", "T-000002"]


def test_close_worker_records_customer_errors_with_their_reason(priced: Any) -> None:
    from functions import close_periods

    ddb_item = priced.billing_store.get_customer("acme")
    ddb_item["plan"] = "gone"  # a plan deleted behind the service's back
    priced.billing_store.put_customer(ddb_item, int(ddb_item["version"]))
    run = close_periods.handler(recorded("scheduler_close_periods.json"), ctx("meterbill-close-periods"))
    close_queue(priced).drain()
    done = priced.billing_runs.view(run["id"])
    assert (done["status"], done["failed"], done["closed"]) == ("finished", 1, 0)
    assert [(f["customer"], "gone" in f["reason"]) for f in done["failures"]] == [("acme", True)]
    assert priced.billing_store.list_invoices("acme", 10, None)[0] == []
