"""Issue 7 §3: a poison record never blocks the stream shard, and the good records of its batch
are still applied exactly once.

Ingest rejects what a bucket cannot store; these records are written straight into the events
table, as an older version or another writer could have, to prove the aggregator's own defence."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.conftest import ev, standard_catalog


def raw_item(event_id: str, tokens: str, customer: str = "acme", ts_ms: int = 1_791_640_800_000) -> dict[str, Any]:
    # 2026-10-10T14:00:00Z; the content digest only has to be a string here
    return {"id": {"S": event_id}, "c": {"S": customer}, "t": {"S": "api.call"}, "ts": {"N": str(ts_ms)},
            "h": {"S": f"digest-{event_id}"}, "at": {"N": "1"}, "p": {"M": {"tokens": {"N": tokens}}}}


def tokens_line(container: Any, customer: str = "acme") -> dict[str, Any]:
    [inv] = container.billing_store.list_invoices(customer, 10, None)[0]
    return next(ln for ln in inv["lines"] if ln.get("meter") == "tokens")


def test_numbers_beyond_the_rule_are_dead_lettered_and_the_rest_of_the_batch_applies(
        container: Any, ddb: Any, drain: Any) -> None:
    standard_catalog(container)
    container.catalog.put_customer("beta", {"name": "Beta", "email": "b@x.example", "plan": "pro",
                                            "started_at": "2026-10-01T00:00:00Z",
                                            "billing_anchor": "2026-10-01T00:00:00Z"})
    ddb.put_item(TableName="t-events", Item=raw_item("big-1", "1e20"))     # beyond ingest's number rule
    ddb.put_item(TableName="t-events", Item=raw_item("big-2", "1e-20"))
    ddb.put_item(TableName="t-events", Item=raw_item("ok-1", "9999999999999999"))
    ddb.put_item(TableName="t-events", Item=raw_item("beta-1", "7", customer="beta"))
    body = json.dumps({"events": [ev("good-1", tokens=5), ev("beta-2", customer="beta", tokens=3)]})
    assert container.ingest.ingest(body, None).accepted == 2
    assert drain() == 6                      # one pass: the batch did not fail
    assert drain() == 0
    letters, _ = container.billing_store.list_dead_letters(10, None)
    assert sorted((d["customer"], d["events"][0]) for d in letters) == [("acme", "big-1"), ("acme", "big-2")]
    assert all(d["problem"].startswith("properties.tokens: must be a finite number below 10^16") for d in letters)
    container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00Z"))
    assert tokens_line(container, "beta")["quantity"] == "10"               # 7 + 3, other customer intact
    assert tokens_line(container, "acme")["quantity"] == str(10 ** 16 - 1 + 5)  # ok-1 + good-1, exact


def test_an_undecodable_record_is_dead_lettered_and_never_blocks_billing(
        container: Any, ddb: Any, drain: Any) -> None:
    standard_catalog(container)
    broken = raw_item("broken-1", "1")
    del broken["c"]                                 # no customer: cannot become an Event
    ddb.put_item(TableName="t-events", Item=broken)
    assert container.ingest.ingest(json.dumps({"events": [ev("ok-1", tokens=4)]}), None).accepted == 1
    drain()
    [letter] = container.billing_store.list_dead_letters(10, None)[0]
    assert "broken-1" in letter["problem"] and "undecodable" in letter["problem"]
    summary = container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00Z"))
    assert summary.usage_lag is None and len(summary.invoices) == 1          # the checkpoint advanced
    assert tokens_line(container)["quantity"] == "4"


def test_dimension_values_too_long_for_a_bucket_key_are_dead_lettered(container: Any, ddb: Any, drain: Any) -> None:
    """DynamoDB keeps a sort key to 1,024 bytes: a bucket keyed by long dimension values fails on
    every retry. It must be kept aside, not block the shard; the event's other meters still count."""
    standard_catalog(container)
    container.catalog.put_meter("by_region", {"event_type": "api.call", "aggregation": "count",
                                              "group_by": ["region", "zone"]})
    long = raw_item("long-1", "1")
    long["p"]["M"].update(region={"S": "r" * 600}, zone={"S": "z" * 600})   # each fits; together they do not
    ddb.put_item(TableName="t-events", Item=long)
    assert container.ingest.ingest(json.dumps({"events": [ev("ok-2", tokens=2, region="eu", zone="a")]}),
                                   None).accepted == 1
    drain()
    assert drain() == 0
    letters = container.billing_store.list_dead_letters(10, None)[0]
    assert [(d["meter"], d["events"]) for d in letters] == [("by_region", ["long-1"])]
    assert letters[0]["problem"].startswith("properties.region: meter 'by_region' groups usage by region, zone")
    container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00Z"))
    assert tokens_line(container)["quantity"] == "3"        # long-1's tokens (1) and ok-2's (2)


def test_dead_letters_are_listed_over_the_api(container: Any, ddb: Any, drain: Any) -> None:
    from meterbill.api.app import build_app
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    standard_catalog(container)
    broken = raw_item("broken-2", "1")
    del broken["t"]
    ddb.put_item(TableName="t-events", Item=broken)
    drain()
    key, _ = container.keys.create(["read"], name="reader")
    app = build_app(APIGatewayHttpResolver, lambda: container)
    event = {"version": "2.0", "routeKey": "$default", "rawPath": "/v1/dead-letters", "rawQueryString": "",
             "headers": {"authorization": f"Bearer {key}"},
             "requestContext": {"http": {"method": "GET", "path": "/v1/dead-letters"}, "stage": "$default"},
             "isBase64Encoded": False}
    resp = app.resolve(event, None)
    assert resp["statusCode"] == 200, resp
    [letter] = json.loads(resp["body"])["data"]
    assert "broken-2" in letter["problem"]


def test_a_batch_lambda_gave_up_on_is_redriven_exactly_once(container: Any, ddb: Any) -> None:
    """The mapping's last resort: after its retries a batch's shard range goes to the on-failure
    queue. Re-driving it from the stream applies what the failed attempts did not, and only that."""
    import boto3

    from meterbill.local.redrive import redrive

    standard_catalog(container)
    body = json.dumps({"events": [ev(f"r{i}", tokens=i, ts=f"2026-10-{1 + i:02d}T10:00:00Z") for i in range(20)]})
    assert container.ingest.ingest(body, None).accepted == 20
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = ddb.describe_table(TableName="t-events")["Table"]["LatestStreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=it["ShardIterator"], Limit=1000)["Records"]
    assert len(records) == 20

    writes = []
    real_put = container.billing_store.put_usage_item

    def fail_after_five(bucket: Any, expected: Any) -> bool:   # the attempts die part-way, as in an outage
        if len(writes) >= 5:
            raise RuntimeError("DynamoDB unavailable")
        writes.append(bucket.key)
        return real_put(bucket, expected)

    container.billing_store.put_usage_item = fail_after_five
    for _ in range(3):    # Lambda's retries, all failing
        try:
            container.aggregation.apply(records)
        except RuntimeError:
            pass
    container.billing_store.put_usage_item = real_put
    assert 0 < len(writes) < 40          # something, not everything, was applied

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="agg-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
        "version": "1.0", "timestamp": "2026-12-01T00:00:00.000Z",
        "DDBStreamBatchInfo": {"shardId": shard["ShardId"], "streamArn": arn, "batchSize": 20,
                               "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                               "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"]}}))
    assert redrive(container, sqs, streams, url) == {"messages": 1, "records": 20, "failed": 0}
    assert redrive(container, sqs, streams, url) == {"messages": 0, "records": 0, "failed": 0}
    container.aggregation.apply(records)          # even a late duplicate delivery changes nothing
    container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00Z"))
    assert tokens_line(container)["quantity"] == str(sum(range(20)))     # each event exactly once
