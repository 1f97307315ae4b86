"""The pass-through serializer sends exactly what botocore would send, and moto accepts it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3

from meterbill.adapters.dynamo_codec import FAST_OPERATIONS, PassThroughSerializer, install_pass_through
from meterbill.adapters.dynamo_events import DynamoEventStore
from meterbill.domain.events import Event, digest


def _event(i: int) -> Event:
    props = {"tokens": i, "price": Decimal("0.1000000000000000055511151231257827"), "ok": True, "none": None,
             "text": "ünïcødé \"quoted\" \\ /"}
    return Event(f"e{i}", "cust", "api.call", 1_790_000_000_000 + i, props, digest("cust", "api.call", i, props))


def _bodies(client: Any, operation: str, params: dict[str, Any]) -> tuple[Any, Any]:
    model = client.meta.service_model.operation_model(operation)
    fast = PassThroughSerializer(client._serializer).serialize_to_request(params, model)
    slow = client._serializer.serialize_to_request(params, model)
    assert fast["headers"] == slow["headers"] and fast["method"] == slow["method"]
    return json.loads(fast["body"]), json.loads(slow["body"])


def test_bodies_identical_to_botocore(ddb: Any) -> None:
    captured: list[dict[str, Any]] = []
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.meta.events.register("before-call.dynamodb.BatchWriteItem",
                                lambda params, **_: captured.append(params["body"]))
    store = DynamoEventStore(client, "t-events")
    store.put([(_event(i), "late" if i % 2 else "") for i in range(3)], 1_790_000_000_000)
    items = json.loads(captured[0])["RequestItems"]
    fast, slow = _bodies(client, "BatchWriteItem", {"RequestItems": items})
    assert fast == slow
    keys = {"t-events": {"Keys": [{"id": {"S": "e1"}}], "ConsistentRead": True}}
    fast, slow = _bodies(client, "BatchGetItem", {"RequestItems": keys})
    assert fast == slow


def test_installed_client_round_trips_on_moto(ddb: Any) -> None:
    client = install_pass_through(boto3.client("dynamodb", region_name="us-east-1"))
    assert isinstance(client._serializer, PassThroughSerializer) and "BatchWriteItem" in FAST_OPERATIONS
    store = DynamoEventStore(client, "t-events")
    events = [_event(i) for i in range(60)]  # 3 chunks, written concurrently
    assert store.put([(e, "") for e in events], 1_790_000_000_000) == set()
    assert {i: e.digest for i, e in store.existing([e.id for e in events]).items()} == {e.id: e.digest for e in events}
    got = store.get("e7")
    assert got is not None and got["properties"]["price"] == Decimal("0.1000000000000000055511151231257827")
