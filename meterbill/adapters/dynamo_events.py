"""Raw event store: one item per event id in the events table (its stream feeds aggregation).

An event id is taken by its first payload, atomically: every event is written by its own
conditional ``PutItem`` (``attribute_not_exists(id)``, ~1 WCU, the same as an unconditional
write). A write that finds the id taken stores nothing and gets the stored item back in the
same call (``ReturnValuesOnConditionCheckFailure``), so duplicates and conflicting payloads are
told apart without a read. ``BatchWriteItem`` cannot carry a condition: two requests racing
with one id would both "succeed", the second silently replacing the first, whose INSERT the
aggregator has already counted (docs/decisions.md, 2026-12-01).
"""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from meterbill.adapters.dynamo_codec import av_scalar, scalar_av
from meterbill.domain.events import Event
from meterbill.ports import PutOutcome, StreamChange

log = logging.getLogger(__name__)
WRITERS = 16          # concurrent PutItem calls per request (the client's connection pool)
PER_WRITER = 8        # fewer events than WRITERS x this: fewer threads
TAKEN = "ConditionalCheckFailedException"


class DynamoEventStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self._executor: ThreadPoolExecutor | None = None

    def put(self, events: Sequence[tuple[Event, str]], accepted_at_ms: int) -> PutOutcome:
        """Store each event (with a flag: '' | 'pending' | 'late' | 'before_start') unless its id is taken.

        The items carry a random token of this call (``w``): a write the SDK retried after a
        lost response finds the item it wrote itself, which counts as stored, not as taken."""
        at, token = {"N": str(accepted_at_ms)}, {"S": secrets.token_hex(6)}
        items = []
        for event, flag in events:
            item = {"id": {"S": event.id}, "c": {"S": event.customer}, "t": {"S": event.type},
                    "ts": {"N": str(event.ts_ms)}, "h": {"S": event.digest}, "at": at, "w": token,
                    "p": {"M": {k: scalar_av(v) for k, v in event.properties.items()}}}
            if flag:
                item["f"] = {"S": flag}
            items.append(item)
        threads = min(WRITERS, -(-len(items) // PER_WRITER))
        if threads <= 1:
            return self._insert_all(items, token["S"])
        outcome = PutOutcome()
        for part in self._pool().map(lambda part: self._insert_all(part, token["S"]),
                                     [items[i::threads] for i in range(threads)]):
            outcome.stored |= part.stored
            outcome.existing.update(part.existing)
            outcome.failed |= part.failed
        return outcome

    def _insert_all(self, items: list[dict[str, Any]], token: str) -> PutOutcome:
        outcome = PutOutcome()
        for item in items:
            event_id = item["id"]["S"]
            try:
                self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(id)",
                                      ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != TAKEN:
                    log.warning("event %s not stored: %s", event_id, exc)
                    outcome.failed.add(event_id)
                    continue
                old = exc.response.get("Item") or self._read(event_id)
                if old is None:  # no stored item came back nor could be read: let the client retry
                    outcome.failed.add(event_id)
                elif old.get("w", {}).get("S") == token:
                    outcome.stored.add(event_id)
                else:
                    outcome.existing[event_id] = image_to_event(old)
            except BotoCoreError as exc:  # connection / timeout after the SDK's own retries
                log.warning("event %s not stored: %s", event_id, exc)
                outcome.failed.add(event_id)
            else:
                outcome.stored.add(event_id)
        return outcome

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="ddb-write")
        return self._executor

    def _read(self, event_id: str) -> dict[str, Any] | None:
        """The stored item, when a failed condition did not return it (not expected from DynamoDB)."""
        try:
            item: dict[str, Any] | None = self._client.get_item(
                TableName=self._table, Key={"id": {"S": event_id}}, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            log.warning("event %s: stored item unreadable: %s", event_id, exc)
            return None
        return item

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
        created = created_epoch_s(data.get("ApproximateCreationDateTime"))
        new, old = data.get("NewImage"), data.get("OldImage")
        try:
            out.append(StreamChange(data["SequenceNumber"], rec["eventName"],
                                    image_to_event(new) if new else None,
                                    old["h"]["S"] if old else None, created,
                                    accepted_ms=int(new["at"]["N"]) if new and "at" in new else None))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            # a record that can never be decoded must not block its shard: the aggregator
            # dead-letters it (deterministically, so a retried batch does the same)
            key = (data.get("Keys") or {}).get("id", {}).get("S", "?")
            out.append(StreamChange(data["SequenceNumber"], "INVALID", None, None, created,
                                    f"event {key}: undecodable stream record ({type(exc).__name__}: {exc})"[:500]))
    return out


def created_epoch_s(value: Any) -> float | None:
    """ApproximateCreationDateTime: epoch seconds in a Lambda event, a datetime from boto3."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def image_to_event(image: Mapping[str, Any]) -> Event:
    return Event(image["id"]["S"], image["c"]["S"], image["t"]["S"], int(image["ts"]["N"]),
                 {k: av_scalar(v) for k, v in image.get("p", {}).get("M", {}).items()},
                 image["h"]["S"])


def image_to_event_dict(image: dict[str, Any]) -> dict[str, Any]:
    e = image_to_event(image)
    return {"id": e.id, "customer": e.customer, "type": e.type, "timestamp": e.timestamp,
            "properties": dict(e.properties), "accepted_at_ms": int(image["at"]["N"]),
            "flag": image.get("f", {}).get("S")}


# -- privacy: the raw-event sweep (services/privacy.py) ------------------------------------------
SCAN_CUSTOMERS_MAX = 100   # operands of one IN (...) filter


def scan_customers(client: Any, table: str, customers: Sequence[str], segment: int = 0, segments: int = 1,
                   start: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of a Scan of the events table, filtered to the events of ``customers``. The table
    has no customer index: a Scan reads (and is billed for) every item, whatever the filter
    keeps (docs/decisions.md, "Privacy: export and erase")."""
    if not 0 < len(customers) <= SCAN_CUSTOMERS_MAX:
        raise ValueError(f"scan 1 to {SCAN_CUSTOMERS_MAX} customers at a time")
    values = {f":c{i}": {"S": c} for i, c in enumerate(customers)}
    kwargs: dict[str, Any] = {"TableName": table, "FilterExpression": f"c IN ({', '.join(values)})",
                              "ExpressionAttributeValues": values}
    if segments > 1:
        kwargs.update(Segment=segment, TotalSegments=segments)
    if start:
        kwargs["ExclusiveStartKey"] = start
    resp = client.scan(**kwargs)
    return list(resp.get("Items", [])), resp.get("LastEvaluatedKey")


class EventScanner:
    """The events of some customers, read by a (parallel) Scan; their properties replaced in place."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def events_of(self, customers: Sequence[str], segment: int = 0, segments: int = 1
                  ) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Every stored event of ``customers`` in one segment of the table: (the stored item, to
        hand back to replace_properties; the event as ``get`` returns it)."""
        start: dict[str, Any] | None = None
        while True:
            items, start = scan_customers(self._client, self._table, customers, segment, segments, start)
            yield from ((item, image_to_event_dict(item)) for item in items)
            if not start:
                return

    def events_of_type(self, event_type: str, customer: str | None, segment: int = 0, segments: int = 1
                       ) -> Iterator[tuple[list[tuple[Event, int]], int, int]]:
        """Pages of one segment of a strongly consistent Scan for the events of one type (and
        customer): (events with their accepted-at ms, items scanned, bytes read as DynamoDB bills
        them: consumed capacity × 4 KB). A Scan reads every item, whatever the filter keeps."""
        values = {":t": {"S": event_type}}
        cond = "t = :t"
        if customer is not None:
            values[":c"] = {"S": customer}
            cond += " AND c = :c"
        kwargs: dict[str, Any] = {"TableName": self._table, "FilterExpression": cond, "ConsistentRead": True,
                                  "ExpressionAttributeValues": values, "ReturnConsumedCapacity": "TOTAL"}
        if segments > 1:
            kwargs.update(Segment=segment, TotalSegments=segments)
        return self._pages(kwargs)

    def events_between(self, customers: Sequence[str], start_ms: int, end_ms: int, segment: int = 0,
                       segments: int = 1) -> Iterator[tuple[list[tuple[Event, int]], int, int]]:
        """Pages of one segment of a strongly consistent Scan for the events of up to 100
        ``customers`` with a timestamp in [start_ms, end_ms) (reconciliation's recount), as
        :meth:`events_of_type` gives them. The filter saves transfer, not reads: a Scan is billed
        for every item of the table."""
        if not 0 < len(customers) <= SCAN_CUSTOMERS_MAX:
            raise ValueError(f"scan 1 to {SCAN_CUSTOMERS_MAX} customers at a time")
        values = {f":c{i}": {"S": c} for i, c in enumerate(customers)}
        values.update({":a": {"N": str(start_ms)}, ":b": {"N": str(end_ms - 1)}})
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True,
                                  "FilterExpression": f"c IN ({', '.join(k for k in values if k.startswith(':c'))}) "
                                                      "AND ts BETWEEN :a AND :b",
                                  "ExpressionAttributeValues": values, "ReturnConsumedCapacity": "TOTAL"}
        if segments > 1:
            kwargs.update(Segment=segment, TotalSegments=segments)
        return self._pages(kwargs)

    def _pages(self, kwargs: dict[str, Any]) -> Iterator[tuple[list[tuple[Event, int]], int, int]]:
        while True:
            resp = self._client.scan(**kwargs)
            units = float(resp.get("ConsumedCapacity", {}).get("CapacityUnits", 0))
            yield ([(image_to_event(i), int(i["at"]["N"]) if "at" in i else 0) for i in resp.get("Items", [])],
                   int(resp.get("ScannedCount", 0)), int(units * 4096))
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def replace_properties(self, item: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
        """Store ``properties`` in place of the event's, keeping its id, digest (``h``: a re-sent
        original is still its duplicate) and everything else. Only if the stored item still has the
        digest read (a stored event never changes otherwise). The stream's MODIFY record carries
        the same digest, which aggregation ignores."""
        try:
            self._client.update_item(
                TableName=self._table, Key={"id": item["id"]}, UpdateExpression="SET p = :p",
                ConditionExpression="h = :h",
                ExpressionAttributeValues={":p": {"M": {k: scalar_av(v) for k, v in properties.items()}},
                                           ":h": item["h"]})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == TAKEN:
                return False
            raise
        return True
