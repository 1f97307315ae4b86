"""The local stack's moto server (meterbill/local/moto_server.py): DynamoDB stream records keep
unique, increasing sequence numbers however many writers write at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest

WRITERS, PUTS = 8, 25


def stream_numbers(ddb: Any, table: str) -> list[int]:
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    numbers: list[int] = []
    while True:
        page = streams.get_records(ShardIterator=it, Limit=1000)
        if not page["Records"]:
            return numbers
        numbers += [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
        it = page["NextShardIterator"]


def test_concurrent_writes_get_unique_increasing_stream_numbers(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import table as moto_table

    from meterbill.local.moto_server import number_stream_records_one_at_a_time

    monkeypatch.setattr(moto_table.StreamShard, "add", moto_table.StreamShard.add)  # undone after the test
    number_stream_records_one_at_a_time()

    class SlowRecord(moto_table.StreamRecord):  # type: ignore[misc]
        def __init__(self, *args: Any) -> None:
            time.sleep(0.001)  # widens moto's gap between numbering a record and appending it
            super().__init__(*args)

    monkeypatch.setattr(moto_table, "StreamRecord", SlowRecord)
    gate = threading.Barrier(WRITERS)

    def writer(w: int) -> None:
        gate.wait()
        for i in range(PUTS):
            ddb.put_item(TableName="t-events", Item={"id": {"S": f"w{w}-{i}"}})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    numbers = stream_numbers(ddb, "t-events")
    assert len(numbers) == WRITERS * PUTS
    assert numbers == sorted(set(numbers)), "stream sequence numbers repeat or go backwards"
