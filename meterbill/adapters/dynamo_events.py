"""Raw event store: one item per event id in the events table (its stream feeds aggregation).

Writes use BatchWriteItem (25 items per call, ~1 WCU per event): an item keyed by the event
id overwrites itself, so a retried write can never create a second copy.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meterbill.adapters.dynamo_codec import av_scalar, scalar_av
from meterbill.domain.events import Event
from meterbill.ports import StreamChange

BATCH_WRITE = 25
BATCH_GET = 100
WRITERS = 8


class DynamoEventStore:
    def __init__(self, client: Any, table: str, *, max_attempts: int = 8,
                 sleep: Any = time.sleep) -> None:
        self._client = client
        self._table = table
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._executor: ThreadPoolExecutor | None = None

    def existing(self, ids: Sequence[str]) -> dict[str, Event]:
        """id -> the stored event, for the ids already stored (strongly consistent reads; a
        read costs 1 RCU per item up to 4 KB whatever it projects, so it reads whole items)."""
        found: dict[str, Event] = {}
        for start in range(0, len(ids), BATCH_GET):
            keys = [{"id": {"S": i}} for i in ids[start:start + BATCH_GET]]
            request = {self._table: {"Keys": keys, "ConsistentRead": True}}
            attempt = 0
            while request:
                resp = self._client.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self._table, []):
                    found[item["id"]["S"]] = image_to_event(item)
                request = resp.get("UnprocessedKeys") or {}
                attempt = self._backoff(attempt, bool(request))
        return found

    def put(self, events: Iterable[tuple[Event, str]], accepted_at_ms: int) -> set[str]:
        """Store events (with a flag: '' | 'pending' | 'late'). Returns ids NOT stored.
        The 25-item chunks are written concurrently: the request waits for the slowest, not the sum."""
        at = str(accepted_at_ms)
        requests = []
        for event, flag in events:
            item = {"id": {"S": event.id}, "c": {"S": event.customer}, "t": {"S": event.type},
                    "ts": {"N": str(event.ts_ms)}, "h": {"S": event.digest}, "at": {"N": at},
                    "p": {"M": {k: scalar_av(v) for k, v in event.properties.items()}}}
            if flag:
                item["f"] = {"S": flag}
            requests.append({"PutRequest": {"Item": item}})
        chunks = [requests[i:i + BATCH_WRITE] for i in range(0, len(requests), BATCH_WRITE)]
        if len(chunks) <= 1:
            return set().union(*map(self._write, chunks))
        return set().union(*self._pool().map(self._write, chunks))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="ddb-write")
        return self._executor

    def _write(self, requests: list[dict[str, Any]]) -> set[str]:
        pending = {self._table: requests}
        attempt = 0
        while pending:
            if attempt >= self._max_attempts:
                return {r["PutRequest"]["Item"]["id"]["S"] for r in pending[self._table]}
            resp = self._client.batch_write_item(RequestItems=pending)
            pending = resp.get("UnprocessedItems") or {}
            attempt = self._backoff(attempt, bool(pending))
        return set()

    def _backoff(self, attempt: int, again: bool) -> int:
        if again:
            self._sleep(min(0.05 * 2 ** attempt, 1.0))
        return attempt + 1

    def get(self, event_id: str) -> dict[str, Any] | None:
        resp = self._client.get_item(TableName=self._table, Key={"id": {"S": event_id}},
                                     ConsistentRead=True)
        item = resp.get("Item")
        return image_to_event_dict(item) if item else None


def decode_stream(records: Sequence[Mapping[str, Any]]) -> list[StreamChange]:
    """Lambda / DynamoDB Streams records of the events table -> StreamChange."""
    out = []
    for rec in records:
        data = rec["dynamodb"]
        new, old = data.get("NewImage"), data.get("OldImage")
        out.append(StreamChange(data["SequenceNumber"], rec["eventName"],
                                image_to_event(new) if new else None,
                                old["h"]["S"] if old else None))
    return out


def image_to_event(image: Mapping[str, Any]) -> Event:
    return Event(image["id"]["S"], image["c"]["S"], image["t"]["S"], int(image["ts"]["N"]),
                 {k: av_scalar(v) for k, v in image.get("p", {}).get("M", {}).items()},
                 image["h"]["S"])


def image_to_event_dict(image: dict[str, Any]) -> dict[str, Any]:
    e = image_to_event(image)
    return {"id": e.id, "customer": e.customer, "type": e.type, "timestamp": e.timestamp,
            "properties": dict(e.properties), "accepted_at_ms": int(image["at"]["N"]),
            "flag": image.get("f", {}).get("S")}
