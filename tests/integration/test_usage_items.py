"""Usage items: one item per customer × meter × group × hour holding its quarter-hour cells, and
one bookkeeping write per stream batch (the shard checkpoint). Readers still see quarter-hour
buckets; quarter-hour items stored before hour items are still read; a batch Lambda gave up on is
re-driven exactly once even after later batches moved the checkpoint past it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import boto3
import pytest

from tests.conftest import ev, standard_catalog, usage_cell

NOV = datetime.fromisoformat("2026-11-01T00:00:00Z")
H10 = 1791626400  # 2026-10-10T10:00:00Z


def stream_records(ddb: Any) -> tuple[Any, str, str, list[dict[str, Any]]]:
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = ddb.describe_table(TableName="t-events")["Table"]["LatestStreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    return streams, arn, shard["ShardId"], streams.get_records(ShardIterator=it["ShardIterator"], Limit=1000)["Records"]


def line(container: Any, meter: str) -> dict[str, Any]:
    [inv] = container.billing_store.list_invoices("acme", 10, None)[0]
    return next(ln for ln in inv["lines"] if ln.get("meter") == meter)


def test_an_hour_of_usage_is_one_item_with_its_quarter_hour_cells(container: Any, ddb: Any, drain: Any) -> None:
    standard_catalog(container)
    minutes = [0, 5, 20, 44, 59]
    body = json.dumps({"events": [ev(f"q{m}", ts=f"2026-10-10T10:{m:02d}:00Z", tokens=m + 1) for m in minutes]})
    assert container.ingest.ingest(body, None).accepted == 5
    drain()
    items = ddb.query(TableName="t-billing", KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "U#acme"}})["Items"]
    assert sorted(i["sk"]["S"] for i in items) == [f"{H10:012d}|calls#", f"{H10:012d}|tokens#"]
    item, _ = usage_cell(ddb, "acme", H10, "tokens")
    cells = {k: (int(c["M"]["n"]["N"]), c["M"]["s"]["N"]) for k, c in item["c"]["M"].items()}
    assert cells == {"0": (2, "7"), "1": (1, "21"), "2": (1, "45"), "3": (1, "60")}
    # readers see quarter-hour buckets, as before
    buckets = container.billing_store.query_buckets("acme", H10 + 900, H10 + 2700)
    assert sorted((b.start_s - H10, b.meter, b.state.count) for b in buckets) == [
        (900, "calls", 1), (900, "tokens", 1), (1800, "calls", 1), (1800, "tokens", 1)]
    assert container.billing_store.first_usage_bucket("acme") == H10


def test_quarter_hour_items_stored_before_hour_items_are_still_billed(container: Any, ddb: Any, drain: Any,
                                                                     clock: Any) -> None:
    """A deployment holds quarter-hour items (``<start>#<meter>#<group>``): they are read next to
    the hour items, and the same quarter-hour in both counts once each; a rebuild folds them into
    the hour item."""
    standard_catalog(container)
    legacy = {"pk": {"S": "U#acme"}, "sk": {"S": f"{H10 + 900:012d}#tokens#"}, "bs": {"N": str(H10 + 900)},
              "m": {"S": "tokens"}, "g": {"S": ""}, "n": {"N": "2"}, "s": {"N": "30"}, "mx": {"NULL": True},
              "mn": {"NULL": True}, "ap": {"M": {"1|1790000000": {"S": "1|1790000000"}}}, "v": {"N": "3"}}
    ddb.put_item(TableName="t-billing", Item=legacy)
    body = json.dumps({"events": [ev("n1", ts="2026-10-10T10:20:00Z", tokens=5),
                                  ev("n2", ts="2026-10-10T10:50:00Z", tokens=7)]})
    assert container.ingest.ingest(body, None).accepted == 2
    drain()
    buckets = [b for b in container.billing_store.query_buckets("acme", H10, H10 + 3600) if b.meter == "tokens"]
    assert sorted((b.start_s - H10, b.state.sum) for b in buckets) == [(900, 5), (900, 30), (2700, 7)]
    assert container.billing_store.query_buckets("acme", H10 + 1800, H10 + 3600)[0].start_s == H10 + 2700
    assert container.billing_store.first_usage_bucket("acme") == H10 + 900
    container.billing.run(NOV)
    assert line(container, "tokens")["quantity"] == "42"
    # `meterbill usage rebuild` re-derives the hour from the raw events and drops the legacy item:
    # the legacy item's usage has no raw events here, so only the two sent remain
    clock.advance(seconds=1)   # the events were accepted before the mark (margin 0: nothing else runs)
    container.rebuild.run(container.rebuild.start("tokens", "acme", margin_s=0))
    assert ddb.get_item(TableName="t-billing", Key={"pk": legacy["pk"], "sk": legacy["sk"]}).get("Item") is None
    assert sorted((b.start_s - H10, b.state.sum) for b in container.billing_store.query_buckets(
        "acme", H10, H10 + 3600) if b.meter == "tokens") == [(900, 5), (2700, 7)]


def test_redriving_a_given_up_batch_after_later_batches_counts_each_event_once(
        container: Any, ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda gives up on a batch only once its records are 6 h old (template), then moves on: the
    next batches complete and move the shard's checkpoint past it. Their item writes must keep the
    given-up batch's markers, or re-driving it would apply again what its attempts applied."""
    from meterbill.local.redrive import redrive

    standard_catalog(container)
    first = [ev(f"a{i}", tokens=i, ts=f"2026-10-{1 + i:02d}T10:00:00Z") for i in range(10)]
    assert container.ingest.ingest(json.dumps({"events": first}), None).accepted == 10
    streams, arn, shard, given_up = stream_records(ddb)
    writes: list[Any] = []
    real_put = container.billing_store.put_usage_item

    def fail_after_five(item: Any, expected: Any) -> bool:
        if len(writes) >= 5:
            raise RuntimeError("DynamoDB unavailable")
        writes.append(item.key)
        return real_put(item, expected)

    monkeypatch.setattr(container.billing_store, "put_usage_item", fail_after_five)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            container.aggregation.apply(given_up)
    monkeypatch.setattr(container.billing_store, "put_usage_item", real_put)
    assert len(writes) == 5
    # 6 h later Lambda gives up and delivers the next batches: the same items, twice
    monkeypatch.setattr(container.watermark, "_wall", lambda: time.time() + 6 * 3600 + 60)
    for n in range(2):
        later = [ev(f"b{n}-{i}", tokens=100, ts=f"2026-10-{1 + i:02d}T10:00:00Z") for i in range(10)]
        assert container.ingest.ingest(json.dumps({"events": later}), None).accepted == 10
        records = stream_records(ddb)[3]
        container.aggregation.apply(records[len(given_up) + 10 * n:])
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="agg-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"DDBStreamBatchInfo": {
        "shardId": shard, "streamArn": arn, "batchSize": 10,
        "startSequenceNumber": given_up[0]["dynamodb"]["SequenceNumber"],
        "endSequenceNumber": given_up[-1]["dynamodb"]["SequenceNumber"]}}))
    assert redrive(container, sqs, streams, url) == {"messages": 1, "records": 10, "failed": 0}
    container.billing.run(NOV)
    assert line(container, "tokens")["quantity"] == str(sum(range(10)) + 2 * 10 * 100)


def test_markers_of_completed_batches_are_pruned_and_a_late_redelivery_changes_nothing(
        container: Any, ddb: Any) -> None:
    standard_catalog(container)
    delivered = []
    for n in range(6):
        assert container.ingest.ingest(json.dumps({"events": [ev(f"c{n}", tokens=1)]}), None).accepted == 1
        records = stream_records(ddb)[3][n:]
        delivered.append(records)
        container.aggregation.apply(records)
    item, cell = usage_cell(ddb, "acme", H10, "tokens")
    assert int(cell["n"]["N"]) == 6
    assert len(item["ap"]["M"]) == 1          # only the last batch's: the checkpoint passed the others
    for records in delivered:                 # a redelivery after the checkpoint moved: skipped
        container.aggregation.apply(records)
    assert int(usage_cell(ddb, "acme", H10, "tokens")[1]["n"]["N"]) == 6
