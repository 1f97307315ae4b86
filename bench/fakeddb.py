"""A REAL boto3 DynamoDB client whose HTTP send is short-circuited with canned responses.

A ``before-send.dynamodb`` handler returns a ``botocore.awsrequest.AWSResponse`` instead of
letting the request go out, so parameter validation, serialisation, SigV4 signing, retry
bookkeeping and response parsing all still run; only the network round trip is missing.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import Counter
from typing import Any

from botocore.awsrequest import AWSResponse

EVENTS_TABLE = "meterbill-events"
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/meterbill-events/stream/2026-01-01T00:00:00.000"
BILLING_TABLE = "meterbill-billing"


class _Raw:
    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class CannedDynamo:
    """Answers what the ingest and aggregation paths ask DynamoDB.

    * BatchGetItem on the events table (duplicate pre-check): nothing stored yet.
    * BatchGetItem of ``CUS#`` profiles: the profiles given (so no event is "pending"); of their
      budgets (the running bill, services/budgets.py): none.
    * BatchGetItem of ``U#`` buckets: none, or (``keep_buckets``) the ones put earlier.
    * BatchWriteItem: everything processed. PutItem / UpdateItem: ``{}`` (so every conditional
      event write succeeds: nothing stored yet).
    * Query (meters on gsi1): the meter items given; of ``STREAMPOS``: the shard checkpoints
      written so far (UpdateItem); of ``REBUILD``: no usage rebuild.

    Counts calls per operation; with ``capture`` keeps every item written.
    """

    def __init__(self, meter_items: list[dict[str, Any]], profiles: dict[str, dict[str, Any]], *,
                 capture: bool = False, keep_buckets: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.event_items: list[dict[str, Any]] = []    # events table items (PutItem)
        self.bucket_items: list[dict[str, Any]] = []   # PutItem items (usage buckets)
        self.other_writes: list[tuple[str, dict[str, Any]]] = []
        self._profiles = profiles
        self.capture = capture
        self._keep = keep_buckets
        self._buckets: dict[tuple[str, str], dict[str, Any]] = {}
        self._checkpoints: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._query = self._encode({"Items": meter_items, "Count": len(meter_items),
                                    "ScannedCount": len(meter_items)})
        self._no_events = self._encode({"Responses": {EVENTS_TABLE: []}, "UnprocessedKeys": {}})
        self._write_ok = self._encode({"UnprocessedItems": {}})
        self._empty = self._encode({})

    def attach(self, client: Any, service: str = "dynamodb") -> Any:
        client.meta.events.register(f"before-send.{service}", self._send)
        return client

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.event_items.clear()
            self.bucket_items.clear()
            self.other_writes.clear()

    @staticmethod
    def _encode(doc: Any) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return raw, {"Content-Type": "application/x-amz-json-1.0", "Content-Length": str(len(raw)),
                     "x-amzn-RequestId": "BENCH0000000000000000000000000000000000000000000000000",
                     "x-amz-crc32": str(zlib.crc32(raw))}

    def _send(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse:
        op = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.calls[op] += 1
        if op == "BatchWriteItem":
            if self.capture:
                doc = json.loads(request.body)
                with self._lock:
                    for reqs in doc["RequestItems"].values():
                        self.event_items.extend(r["PutRequest"]["Item"] for r in reqs)
            body, headers = self._write_ok
        elif op == "BatchGetItem":
            body, headers = self._batch_get(json.loads(request.body)["RequestItems"])
        elif op == "Query":
            doc = json.loads(request.body)
            partition = doc.get("ExpressionAttributeValues", {}).get(":p")
            if partition in ({"S": "STREAMPOS"}, {"S": "REBUILD"}):   # checkpoints; usage rebuilds: none
                with self._lock:
                    found = list(self._checkpoints.values()) if partition == {"S": "STREAMPOS"} else []
                body, headers = self._encode({"Items": found, "Count": len(found), "ScannedCount": len(found)})
            else:
                body, headers = self._query
        elif op == "DescribeTable":  # the usage watermark finds the events stream once
            body, headers = self._encode({"Table": {"TableName": EVENTS_TABLE, "LatestStreamArn": STREAM_ARN}})
        elif op == "DescribeStream":  # one open shard holding every sequence number
            body, headers = self._encode({"StreamDescription": {"StreamArn": STREAM_ARN, "Shards": [
                {"ShardId": "shardId-00000001700000000000-bench", "SequenceNumberRange": {"StartingSequenceNumber": "0"}}]}})
        elif op in ("PutItem", "UpdateItem"):
            doc = json.loads(request.body)
            if op == "UpdateItem" and doc["Key"]["pk"]["S"] == "STREAMPOS":  # the shard checkpoint
                with self._lock:
                    self._checkpoints[doc["Key"]["sk"]["S"]] = {**doc["Key"], **{
                        {":s": "seq", ":a": "applied_at", ":c": "created"}[k]: v
                        for k, v in doc["ExpressionAttributeValues"].items()}}
            if self.capture or self._keep:
                item = doc.get("Item") if op == "PutItem" else None
                with self._lock:
                    if item is not None and "pk" not in item:  # the events table (conditional put per event)
                        self.event_items.append(item)
                    elif item is not None and item["pk"]["S"].startswith("U#"):
                        self.bucket_items.append(item)
                        if self._keep:
                            self._buckets[(item["pk"]["S"], item["sk"]["S"])] = item
                    else:
                        self.other_writes.append((op, doc))
            body, headers = self._empty
        else:
            raise AssertionError(f"the benchmark's canned DynamoDB does not answer {op}")
        return AWSResponse(request.url, 200, headers, _Raw(body))

    def _batch_get(self, request_items: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        if list(request_items) == [EVENTS_TABLE]:
            return self._no_events
        responses: dict[str, list[Any]] = {}
        for table, spec in request_items.items():
            found = responses.setdefault(table, [])
            for key in spec["Keys"]:
                pk = key["pk"]["S"] if "pk" in key else ""
                if pk.startswith("CUS#") and key.get("sk", {}).get("S") == "PROFILE":
                    item = self._profiles.get(pk[4:])   # a customer's other items (its budget): none
                elif pk.startswith("U#") and self._keep:
                    with self._lock:
                        item = self._buckets.get((pk, key["sk"]["S"]))
                else:
                    item = None
                if item is not None:
                    found.append(item)
        return self._encode({"Responses": responses, "UnprocessedKeys": {}})


def canned_container(meter_codes: list[str], customer_ids: list[str], *, capture: bool = False,
                     keep_buckets: bool = False, clock: Any = None) -> tuple[Any, CannedDynamo]:
    """The real composition root (``bootstrap``) around a real, short-circuited boto3 client."""
    from bench import use_fake_aws
    from bench.workload import NOW, meter_items, profile_item
    from meterbill.bootstrap import bootstrap, dynamodb_client
    from meterbill.config import Settings

    use_fake_aws()
    settings = Settings(events_table=EVENTS_TABLE, billing_table=BILLING_TABLE, region="us-east-1")
    client = dynamodb_client(settings)  # the production client configuration (retries, pool, timeouts)
    fake = CannedDynamo(meter_items(meter_codes), {c: profile_item(c) for c in customer_ids},
                        capture=capture, keep_buckets=keep_buckets)
    fake.attach(client)
    container = bootstrap(settings, client=client, clock=clock or (lambda: NOW))
    fake.attach(container.watermark._streams, "dynamodb-streams")  # the aggregator's checkpoint finds its shard
    return container, fake
