"""moto's server as the local stack runs it (`python -m meterbill.local.moto_server -H host -p port`),
with two fixes for concurrent clients (`patch_moto`, also applied to in-process moto by the tests).

1. DynamoDB stream records numbered one at a time. moto (5.2.1) numbers a stream record by the
   shard's record count, read and then appended to without a lock (``StreamShard.add``), and its
   server serves requests on many threads. Concurrent writes — an ingest request writes its
   25-item chunks in parallel, and the API serves requests in parallel — can then give two records
   one sequence number, or a record a lower number than records before it. Reading
   ``AFTER_SEQUENCE_NUMBER`` of such a record delivers the records after that number again, and
   aggregation counts them twice. (Real DynamoDB Streams numbers are unique and increasing in shard
   order, which the aggregator rightly relies on.)
2. ``TransactWriteItems`` atomic among concurrent writers. moto deep-copies every table a
   transaction touches before writing, and on any failure (a condition not met: routine for
   optimistic writers) puts the copies back: every write other threads made to that table in the
   meantime is silently undone (a usage bucket, another worker's invoice), the copy itself can fail
   on a table changing under it (HTTP 500), and its cost grows with the table. Here a transaction
   checks every condition first and writes only if all hold, under one lock that every DynamoDB
   write takes, and restores only the items it wrote should a write fail half-way. (DynamoDB
   itself isolates transactions from concurrent writes to the same items.)
3. Queries that cost what DynamoDB's cost. moto answers every ``Query`` by listing and SORTING every
   item of the table (``Table.all_items``), then keeping the partition it was asked for: a query costs
   O(n log n) in the table's size, so a billing run over many customers (each close queries its
   customer's partitions) is quadratic — a 10,000-customer local run closed a few customers a
   minute. Here a query of the table reads its one partition; a query of an index starts from the
   unsorted items (moto sorts the matches itself). Results are moto's, item for item (tested).
4. SQS calls that don't recount the queue. moto computes every queue attribute — the approximate
   message counts, each a pass over all messages reading the clock twice per message — to look up
   one (``ContentBasedDeduplication`` on every message sent, ``MessageRetentionPeriod`` on every
   message received): sending or receiving cost O(queue length), so enqueueing a 10,000-customer
   run was quadratic. Here those two look-ups read the queue's field, and moto's clock is
   ``time.time()`` (what its datetime arithmetic computed).
"""

from __future__ import annotations

import copy
import inspect
import threading
import time
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (ConditionalCheckFailed, MockValidationException,
                                      MultipleTransactionsException, TooManyTransactionsException,
                                      TransactionCanceledException, TransactWriteSingleOpException)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import StreamShard, Table

# Every DynamoDB write of this process (re-entrant: a transaction calls put/update/delete).
WRITE_LOCK = threading.RLock()
# ... and every read that iterates a table's items (moto's dicts change size under a concurrent write:
# "dictionary changed size during iteration")
_WRITES = ("put_item", "update_item", "delete_item", "query", "scan")


def patch_moto() -> None:
    """The four fixes, in this process (once; calling again is a no-op)."""
    number_stream_records_one_at_a_time()
    query_one_partition()
    sqs_without_recounting()
    if getattr(DynamoDBBackend.transact_write_items, "isolated", False):
        return
    for name in _WRITES:
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name)))
    transact_write_items.isolated = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def number_stream_records_one_at_a_time() -> None:
    """Patch moto, in this process: ``StreamShard.add`` under one lock (once; calling again is a no-op)."""
    add = StreamShard.add
    if getattr(add, "one_at_a_time", False):
        return
    lock = threading.Lock()

    def add_one_at_a_time(self: StreamShard, old: Any, new: Any) -> None:
        with lock:
            add(self, old, new)

    add_one_at_a_time.one_at_a_time = True  # type: ignore[attr-defined]
    StreamShard.add = add_one_at_a_time  # type: ignore[method-assign]


_SCOPE = threading.local()   # the items a query on this thread may match (fix 3)


def query_one_partition() -> None:
    """Patch moto, in this process: ``Table.query`` starts from the items it can match (once)."""
    query, all_items = Table.query, Table.all_items
    if getattr(query, "one_partition", False):
        return

    def scoped_all_items(self: Table) -> Any:
        scope = getattr(_SCOPE, "items", None)
        if scope is not None and scope[0] is self:
            return scope[1]
        return all_items(self)

    signature = inspect.signature(query)

    def query_from_partition(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        if signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name"):
            items = _unsorted_items(self)   # an index query sorts its matches itself
        elif hash_key is None or hash_key not in self.items:
            items = []
        elif self.range_key_attr:
            items = list(self.items[hash_key].values())
        else:
            items = [self.items[hash_key]]
        _SCOPE.items = (self, items)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _SCOPE.items = None

    query_from_partition.one_partition = True  # type: ignore[attr-defined]
    query_from_partition.moto = (query, all_items)  # type: ignore[attr-defined]  # moto's own (the tests compare)
    Table.query = query_from_partition  # type: ignore[method-assign]
    Table.all_items = scoped_all_items  # type: ignore[method-assign]


def sqs_without_recounting() -> None:
    """Patch moto, in this process: SQS sends and receives read single queue fields (once)."""
    from moto.sqs import models as sqs

    if getattr(sqs.SQSBackend.send_message, "uncounted", False):
        return
    moto_unix_time = sqs.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else moto_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    sqs.unix_time, sqs.unix_time_millis = unix_time, unix_time_millis
    send_message = sqs.SQSBackend.send_message
    attributes = sqs.Queue.attributes

    def queue_attributes(self: Any) -> dict[str, Any]:
        if getattr(_SENDING, "queue", None) is self:   # send_message wants ContentBasedDeduplication only
            return {"ContentBasedDeduplication": str(bool(getattr(self, "content_based_deduplication", False))).lower()}
        return attributes.fget(self)  # type: ignore[no-any-return]

    def send_uncounted(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        _SENDING.queue = self.get_queue(queue_name)
        try:
            return send_message(self, queue_name, *args, **kwargs)
        finally:
            _SENDING.queue = None

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()

    send_uncounted.uncounted = True  # type: ignore[attr-defined]
    sqs.SQSBackend.send_message = send_uncounted
    sqs.Queue.attributes = property(queue_attributes)
    sqs.SQSBackend.is_message_valid_based_on_retention_period = retained


_SENDING = threading.local()   # the queue a send_message on this thread writes to (fix 4)


def _unsorted_items(table: Table) -> list[Any]:
    if not table.range_key_attr:
        return list(table.items.values())
    return [item for partition in table.items.values() for item in partition.values()]


def _locked(write: Any) -> Any:
    def locked(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with WRITE_LOCK:
            return write(self, *args, **kwargs)
    return locked


def _key(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``TransactWriteItems`` (same checks, same errors), all-or-nothing among threads."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with WRITE_LOCK:
        seen: set[tuple[str, str]] = set()
        planned: list[tuple[str, dict[str, Any], str, dict[str, Any], Any]] = []
        errors: list[tuple[Any, Any, Any]] = []
        for item in transact_items:
            if len(item) > 1:
                raise TransactWriteSingleOpException
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            name = op["TableName"]
            key = _key(self, op_type, op)
            unique = (str(name), str(dict(sorted(key.items()))))
            if unique in seen:
                raise MultipleTransactionsException()
            seen.add(unique)
            current = self.get_item(name, key)
            condition = op.get("ConditionExpression")
            if condition is not None and not get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")).expr(current):
                old = (current.to_json()["Attributes"] if current is not None
                       and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None)
                errors.append(("ConditionalCheckFailed", ConditionalCheckFailed().message, old))
            else:
                errors.append((None, None, None))
            planned.append((op_type, op, name, key, copy.deepcopy(current)))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
        written: list[tuple[str, dict[str, Any], Any]] = []
        try:
            for i, (op_type, op, name, key, before) in enumerate(planned):
                written.append((name, key, before))
                _write(self, op_type, op, name, key)
        except MockValidationException:
            _restore(self, written)
            raise
        except Exception as exc:  # as moto reports any other failure: the transaction is cancelled
            _restore(self, written)
            failed = [(None, None, None)] * len(planned)
            failed[i] = (type(exc).__name__, str(exc), None)
            raise TransactionCanceledException(failed) from exc


def _write(backend: DynamoDBBackend, op_type: str, op: dict[str, Any], name: str, key: dict[str, Any]) -> None:
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if op_type == "Put":
        backend.put_item(name, op["Item"], expression_attribute_names=names, expression_attribute_values=values)
    elif op_type == "Delete":
        backend.delete_item(name, key, expression_attribute_names=names, expression_attribute_values=values)
    elif op_type == "Update":
        backend.update_item(name, key, update_expression=op["UpdateExpression"],
                            expression_attribute_names=names, expression_attribute_values=values)


def _restore(backend: DynamoDBBackend, written: list[tuple[str, dict[str, Any], Any]]) -> None:
    for name, key, before in reversed(written):
        if before is None:
            backend.delete_item(name, key)
        else:
            backend.put_item(name, before.to_json()["Attributes"])


if __name__ == "__main__":
    from moto.server import main

    patch_moto()
    main()
