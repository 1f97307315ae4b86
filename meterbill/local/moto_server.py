"""moto's server as the local stack runs it (`python -m meterbill.local.moto_server -H host -p port`),
with one fix: DynamoDB stream records numbered one at a time.

moto (5.2.1) numbers a stream record by the shard's record count, read and then appended to
without a lock (``StreamShard.add``), and its server serves requests on many threads. Concurrent
writes — an ingest request writes its 25-item chunks in parallel, and the API serves requests in
parallel — can then give two records one sequence number, or a record a lower number than
records before it. Reading ``AFTER_SEQUENCE_NUMBER`` of such a record delivers the records after
that number again, and aggregation counts them twice. (Real DynamoDB Streams numbers are unique
and increasing in shard order, which the aggregator rightly relies on.)
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.models.table import StreamShard


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


def serialize_dynamodb_writes() -> None:
    """Patch moto, in this process: its DynamoDB writes one at a time (once; again is a no-op).

    moto's ``transact_write_items`` snapshots every table it touches (a deep copy) and, when a
    condition fails, puts the snapshot back in place of the table: a write another thread made
    meanwhile (the close queue's workers commit invoices and record outcomes in parallel) would be
    silently undone. Real DynamoDB isolates transactions per item; one lock over moto's writes
    gives the same result for the local stack and the tests."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend.transact_write_items, "serialized", False):
        return
    lock = threading.RLock()   # transact_write_items calls put_item / update_item / delete_item
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        method = getattr(DynamoDBBackend, name, None)
        if method is None:
            continue

        def serialized(self: Any, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with lock:
                return __method(self, *args, **kwargs)

        serialized.serialized = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, serialized)


if __name__ == "__main__":
    from moto.server import main

    number_stream_records_one_at_a_time()
    serialize_dynamodb_writes()
    main()
