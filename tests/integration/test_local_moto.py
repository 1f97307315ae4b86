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


def test_a_cancelled_transaction_undoes_nothing_written_by_others(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto alone restores a deep copy of the whole table when a transaction is cancelled, undoing
    concurrent writers' items (a usage bucket, another worker's invoice). Patched: only the
    transaction's own items, which it never wrote because a condition failed."""
    from moto.dynamodb.models import DynamoDBBackend

    get_item = DynamoDBBackend.get_item

    def slow_get_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.002)  # a transaction reads each item: widen the window other writers write in
        return get_item(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", slow_get_item)
    ddb.put_item(TableName="t-billing", Item={"pk": {"S": "COUNTER#x"}, "sk": {"S": "COUNTER"}, "n": {"N": "1"}})
    gate = threading.Barrier(2)
    stop = threading.Event()
    written: list[str] = []

    def other_writer() -> None:
        gate.wait()
        i = 0
        while not stop.is_set():
            ddb.put_item(TableName="t-billing", Item={"pk": {"S": f"B#{i}"}, "sk": {"S": "X"}})
            written.append(f"B#{i}")
            i += 1

    def failing_transaction() -> None:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t-billing", "Item": {"pk": {"S": "INV#1"}, "sk": {"S": "INVOICE"}}}},
            {"Update": {"TableName": "t-billing", "Key": {"pk": {"S": "COUNTER#x"}, "sk": {"S": "COUNTER"}},
                        "UpdateExpression": "SET n = :n", "ConditionExpression": "n = :prev",
                        "ExpressionAttributeValues": {":n": {"N": "3"}, ":prev": {"N": "2"}}}}])

    thread = threading.Thread(target=other_writer)
    thread.start()
    gate.wait()
    cancelled = 0
    for _ in range(30):
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            failing_transaction()
        cancelled += 1
    stop.set()
    thread.join()

    assert cancelled == 30 and written
    for pk in written:
        assert "Item" in ddb.get_item(TableName="t-billing", Key={"pk": {"S": pk}, "sk": {"S": "X"}}), pk
    assert "Item" not in ddb.get_item(TableName="t-billing", Key={"pk": {"S": "INV#1"}, "sk": {"S": "INVOICE"}})
    counter = ddb.get_item(TableName="t-billing", Key={"pk": {"S": "COUNTER#x"}, "sk": {"S": "COUNTER"}})["Item"]
    assert counter["n"] == {"N": "1"}


def test_a_transaction_writes_all_its_items_when_every_condition_holds(ddb: Any) -> None:
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "t-billing", "Item": {"pk": {"S": "A"}, "sk": {"S": "1"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": "t-billing", "Key": {"pk": {"S": "C"}, "sk": {"S": "1"}},
                    "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
    assert "Item" in ddb.get_item(TableName="t-billing", Key={"pk": {"S": "A"}, "sk": {"S": "1"}})
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t-billing", "Item": {"pk": {"S": "A"}, "sk": {"S": "1"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": {"TableName": "t-billing", "Key": {"pk": {"S": "C"}, "sk": {"S": "1"}},
                        "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
    reasons = [r["Code"] for r in exc.value.response["CancellationReasons"]]
    assert reasons == ["ConditionalCheckFailed", "None"]
    assert ddb.get_item(TableName="t-billing", Key={"pk": {"S": "C"}, "sk": {"S": "1"}})["Item"]["n"] == {"N": "1"}


def _pages(ddb: Any, **query: Any) -> list[list[dict[str, Any]]]:
    pages, start = [], None
    while True:
        page = ddb.query(**query, **({"ExclusiveStartKey": start} if start else {}))
        pages.append(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_a_query_reads_its_partition_and_answers_as_moto_does(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix 3: a table query starts from its one partition (moto listed and sorted the whole table per
    query); table and index queries, paged, reversed, with key conditions and filters, answer item for
    item as moto's own query does."""
    from moto.dynamodb.models.table import Table

    for p in range(12):
        for s in range(9):
            ddb.put_item(TableName="t-billing", Item={
                "pk": {"S": f"CUST#{p % 5}" if p < 5 else f"OTHER#{p}"}, "sk": {"S": f"ITEM#{s:02d}#{p}"},
                "n": {"N": str((p * s) % 7)}, "gsi1pk": {"S": f"G#{s % 3}"}, "gsi1sk": {"S": f"{p:03d}#{s}"}})
    queries = [
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "CUST#3"}}, "Limit": 4},
        {"KeyConditionExpression": "pk = :p AND begins_with(sk, :s)", "ScanIndexForward": False, "Limit": 2,
         "ExpressionAttributeValues": {":p": {"S": "CUST#1"}, ":s": {"S": "ITEM#0"}}},
        {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "FilterExpression": "n > :z",
         "ExpressionAttributeValues": {":p": {"S": "CUST#2"}, ":a": {"S": "ITEM#02"}, ":b": {"S": "ITEM#07"},
                                       ":z": {"N": "2"}}, "Limit": 3},
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "NOBODY"}}},
        {"IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :g AND gsi1sk > :k", "Limit": 5,
         "ExpressionAttributeValues": {":g": {"S": "G#1"}, ":k": {"S": "004"}}, "ScanIndexForward": False},
    ]
    from meterbill.local import moto_server

    considered: list[int] = []    # how many items each query page started from
    listed = Table.all_items

    def counting(self: Table) -> Any:
        items = listed(self)
        considered.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counting)
    patched = [_pages(ddb, TableName="t-billing", **q) for q in queries]
    pages = [len(p) for p in patched]
    table_pages, index_pages = considered[:sum(pages[:4])], considered[sum(pages[:4]):]
    assert max(table_pages) == 9 and set(table_pages) <= {0, 9}    # one partition, not the 108-item table
    assert set(index_pages) == {108}                                # an index query starts from every item
    assert moto_server._SCOPE.items is None
    assert any(len(p) > 1 for p in patched[0:3]) and patched[3] == [[]] and sum(map(len, patched[4])) > 0

    moto_query, moto_all_items = Table.query.moto  # type: ignore[attr-defined]
    monkeypatch.setattr(Table, "query", moto_query)
    monkeypatch.setattr(Table, "all_items", moto_all_items)
    assert [_pages(ddb, TableName="t-billing", **q) for q in queries] == patched


def test_sqs_sends_and_receives_without_recounting_the_queue(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix 4: sending and receiving read single queue fields (moto recounted every message of the
    queue per message sent or received); what SQS answers is unchanged: counts, receives, FIFO
    content-based de-duplication, retention."""
    from moto.sqs import models as sqs_models

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="t-plain")["QueueUrl"]
    fifo = sqs.create_queue(QueueName="t-dedup.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    for i in range(0, 30, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"m{j}", "MessageBody": f"body {j}"}
                                                      for j in range(i, i + 10)])
    counted: list[int] = []
    counts = sqs_models.Queue.approximate_number_of_messages

    monkeypatch.setattr(sqs_models.Queue, "approximate_number_of_messages",
                        property(lambda self: counted.append(1) or counts.fget(self)))
    sqs.send_message(QueueUrl=url, MessageBody="one more")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert counted == []                       # neither recounted the queue
    assert len(got) == 10
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("21", "10")
    for _ in range(2):
        sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
    assert attrs and sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "1"   # content-based de-duplication still applies
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
    later = time.time() + 61
    monkeypatch.setattr("meterbill.local.moto_server.time.time", lambda: later)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)   # past retention
