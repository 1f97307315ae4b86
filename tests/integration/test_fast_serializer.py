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
    client.meta.events.register("before-call.dynamodb.PutItem",
                                lambda params, **_: captured.append(params["body"]))
    store = DynamoEventStore(client, "t-events")
    store.put([(_event(i), "late" if i % 2 else "") for i in range(3)], 1_790_000_000_000)
    for body in captured:
        fast, slow = _bodies(client, "PutItem", json.loads(body))
        assert fast == slow
    keys = {"t-events": {"Keys": [{"id": {"S": "e1"}}], "ConsistentRead": True}}
    fast, slow = _bodies(client, "BatchGetItem", {"RequestItems": keys})
    assert fast == slow


def test_installed_client_round_trips_on_moto(ddb: Any) -> None:
    client = install_pass_through(boto3.client("dynamodb", region_name="us-east-1"), put_tables=("t-events",))
    assert isinstance(client._serializer, PassThroughSerializer) and "BatchWriteItem" in FAST_OPERATIONS
    sent: list[str] = []
    client.meta.events.register("before-send.dynamodb.PutItem", lambda **_: sent.append("PutItem"))
    store = DynamoEventStore(client, "t-events")
    events = [_event(i) for i in range(60)]  # written by several threads
    assert store.put([(e, "") for e in events], 1_790_000_000_000).stored == {e.id for e in events}
    assert len(sent) == 60
    again = store.put([(e, "") for e in events[:3]], 1_790_000_000_001)  # ids taken: the stored events come back
    assert again.stored == set() and {i: e.digest for i, e in again.existing.items()} == {
        e.id: e.digest for e in events[:3]}
    got = store.get("e7")
    assert got is not None and got["properties"]["price"] == Decimal("0.1000000000000000055511151231257827")


def test_query_and_scan_results_identical_to_botocore(ddb: Any) -> None:
    """The pass-through parser returns what botocore's shape walk returns (minus nothing but the
    time it takes), and from_item what boto3's TypeDeserializer does."""
    from boto3.dynamodb.types import TypeDeserializer

    from meterbill.adapters.dynamo_codec import from_item

    items = [{"pk": {"S": "U#c"}, "sk": {"S": f"{i:03d}"}, "n": {"N": str(i)}, "s": {"N": "12345678901234567890.0001"},
              "neg": {"N": "-0.5"}, "big": {"N": "1E+100"}, "m": {"M": {"a": {"N": "1"}, "b": {"L": [{"S": "x"}, {"NULL": True}]}}},
              "ok": {"BOOL": i % 2 == 0}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "u": {"S": "ünï \"q\""}}
             for i in range(30)]
    for item in items:
        ddb.put_item(TableName="t-billing", Item=item)
    plain = boto3.client("dynamodb", region_name="us-east-1")
    fast = install_pass_through(boto3.client("dynamodb", region_name="us-east-1"))
    query = {"TableName": "t-billing", "KeyConditionExpression": "pk = :p",
             "ExpressionAttributeValues": {":p": {"S": "U#c"}}, "Limit": 7}
    for op, params in (("query", query), ("scan", {"TableName": "t-billing", "Limit": 11})):
        a, b = getattr(fast, op)(**params), getattr(plain, op)(**params)
        meta_a, meta_b = a.pop("ResponseMetadata"), b.pop("ResponseMetadata")
        assert a == b and a["Items"]
        assert meta_a["HTTPStatusCode"] == meta_b["HTTPStatusCode"] == 200
        assert meta_a["RequestId"] and meta_b["RequestId"]  # each request its own
        de = TypeDeserializer()
        assert [from_item(i) for i in a["Items"]] == [{k: de.deserialize(v) for k, v in i.items()} for i in b["Items"]]
    with __import__("pytest").raises(fast.exceptions.ResourceNotFoundException):  # errors: botocore's path
        fast.query(**{**query, "TableName": "no-such-table"})


def test_the_pass_through_parser_is_the_one_botocore_uses(ddb: Any, monkeypatch: Any) -> None:
    from botocore import parsers

    from meterbill.adapters.dynamo_codec import PassThroughParser

    fast = install_pass_through(boto3.client("dynamodb", region_name="us-east-1"))
    walked: list[str] = []
    handle = parsers.BaseJSONParser._handle_structure

    def counting(self: Any, shape: Any, value: Any) -> Any:
        walked.append(shape.name)
        return handle(self, shape, value)

    monkeypatch.setattr(parsers.BaseJSONParser, "_handle_structure", counting)
    fast.query(TableName="t-billing", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "x"}})
    assert "QueryOutput" not in walked                    # not botocore's shape walk
    fast.get_item(TableName="t-billing", Key={"pk": {"S": "x"}, "sk": {"S": "y"}})
    assert "GetItemOutput" in walked                      # other operations: unchanged
    assert isinstance(fast._endpoint._response_parser_factory.create_parser("json"), PassThroughParser)
