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


if __name__ == "__main__":
    from moto.server import main

    number_stream_records_one_at_a_time()
    main()
