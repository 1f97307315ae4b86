"""DynamoDB attribute-value encoding shared by the adapters (exact decimals, no floats)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_ser = TypeSerializer()
_de = TypeDeserializer()


def scalar_av(value: Any) -> dict[str, Any]:
    """Fast path for flat event properties (str, int, Decimal, bool, None)."""
    t = type(value)
    if t is str:
        return {"S": value}
    if t is bool:
        return {"BOOL": value}
    if t is int:
        return {"N": str(value)}
    if t is Decimal:
        return {"N": format(value, "f") if value.is_finite() else str(value)}
    if value is None:
        return {"NULL": True}
    raise TypeError(f"unsupported property value {type(value).__name__}")


def av_scalar(av: Mapping[str, Any]) -> Any:
    if "S" in av:
        return av["S"]
    if "N" in av:
        n = av["N"]
        return int(n) if n.lstrip("-").isdigit() else Decimal(n)
    if "BOOL" in av:
        return av["BOOL"]
    if "NULL" in av:
        return None
    raise TypeError(f"unsupported attribute value {av!r}")


def to_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in doc.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_av(v) for k, v in item.items()}


def from_av(av: Mapping[str, Any]) -> Any:
    """boto3's ``TypeDeserializer.deserialize``, faster for the types our items hold (a close
    decodes thousands of usage items); the same results (numbers through DynamoDB's decimal
    context, so a number DynamoDB could not hold is refused the same way); binary and anything
    unusual go to boto3's."""
    if len(av) == 1:
        ((tag, value),) = av.items()
        if tag == "S":
            return value
        if tag == "N":
            return _number(value)
        if tag == "M":
            return {k: from_av(v) for k, v in value.items()}
        if tag == "L":
            return [from_av(v) for v in value]
        if tag == "BOOL":
            return value
        if tag == "NULL":
            return None
        if tag == "SS":
            return set(value)
        if tag == "NS":
            return set(map(_number, value))
    return _de.deserialize(av)


_number = _de._deserialize_n  # DYNAMODB_CONTEXT.create_decimal, as boto3 does


def encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


# What encode_cursor produces: base64url (with its padding) of a JSON object. Checked before decoding,
# as base64's decoder silently drops characters outside its alphabet.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{4,2048}={0,2}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_KEY_BYTES = {"pk": 2048, "sk": 1024}  # DynamoDB's limits for partition and sort key values


def decode_cursor(cursor: str | None, expect: Mapping[str, str | None]) -> dict[str, Any] | None:
    """The ``ExclusiveStartKey`` a cursor of this listing stands for, or ``InvalidField('cursor')``.

    ``expect`` names every key attribute of the listing's last evaluated key (the table's and the
    index's), each with the value it must have (the partition queried) or None for any string. A
    cursor is accepted only in exactly that shape, so one of another listing, or one that decodes
    to anything else (``[1,2]``, ``"x"``, ``5``, a forged key), is a 400 here, never an error from
    DynamoDB (a start key outside the query is a ValidationException: a 500)."""
    if cursor is None or cursor == "":
        return None
    try:
        if not _CURSOR.match(cursor):
            raise ValueError
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if type(value) is not dict or set(value) != set(expect):
            raise ValueError
        for name, av in value.items():
            if type(av) is not dict or set(av) != {"S"} or type(av["S"]) is not str or not av["S"]:
                raise ValueError
            if len(av["S"].encode()) > _KEY_BYTES["pk" if name.endswith("pk") else "sk"]:
                raise ValueError
            if expect[name] is not None and av["S"] != expect[name]:
                raise ValueError
    except (ValueError, TypeError, RecursionError, UnicodeError):
        from meterbill.domain.errors import InvalidField

        raise InvalidField("cursor", "is not a cursor returned by this listing: pass next_cursor unchanged",
                           "invalid_cursor") from None
    return value


FAST_OPERATIONS = frozenset({"BatchWriteItem", "BatchGetItem"})


class PassThroughSerializer:
    """For the ingest hot path: our adapters build BatchWriteItem / BatchGetItem parameters, and
    the event store its PutItem parameters, already in DynamoDB's wire format (S, N as strings,
    M, BOOL, NULL; no binary), so the request body is exactly ``json.dumps(parameters)``.
    botocore's shape walk and parameter validation would only re-create that. PutItem takes this
    path only for the tables named in ``put_tables`` (other adapters' items are not checked for
    wire format); every other operation goes through botocore unchanged.
    ``tests/integration/test_fast_serializer.py`` proves the bodies are identical."""

    def __init__(self, inner: Any, operations: frozenset[str] = FAST_OPERATIONS,
                 put_tables: frozenset[str] = frozenset()) -> None:
        self._inner = inner
        # botocore wraps the serializer in a ParamValidationDecorator when validation is on
        self._raw = getattr(inner, "_serializer", inner)
        self._ops = operations
        self._put_tables = put_tables

    def serialize_to_request(self, parameters: Mapping[str, Any], operation_model: Any) -> dict[str, Any]:
        name = operation_model.name
        if name not in self._ops and not (name == "PutItem" and parameters.get("TableName") in self._put_tables):
            return self._inner.serialize_to_request(parameters, operation_model)
        request: dict[str, Any] = self._raw.serialize_to_request({}, operation_model)
        request["body"] = json.dumps(parameters, separators=(",", ":")).encode()
        return request


# Responses decoded straight from their JSON body: DynamoDB's wire format (S, N as text, M, L, BOOL,
# NULL, SS, NS) is what botocore's shape walk would return for them, at a fraction of the cost —
# a close reads thousands of usage items (docs/performance.md, close cost). Binary values would
# differ (botocore base64-decodes them): no item of ours holds one, and a response that contains
# one ("B"/"BS" anywhere) takes botocore's path.
FAST_OUTPUTS = frozenset({"QueryOutput", "ScanOutput"})


class PassThroughParser:
    """Wrap botocore's response parser: successful Query / Scan responses are ``json.loads`` of the
    body plus the response metadata botocore adds; everything else (errors, other operations)
    unchanged. ``tests/integration/test_fast_serializer.py`` proves the results are identical."""

    def __init__(self, inner: Any, outputs: frozenset[str] = FAST_OUTPUTS) -> None:
        self._inner = inner
        self._outputs = outputs

    def parse(self, response: Mapping[str, Any], shape: Any) -> Any:
        if response.get("status_code") != 200 or shape is None or shape.name not in self._outputs:
            return self._inner.parse(response, shape)
        body = response["body"]
        if b'"B"' in body or b'"BS"' in body:
            return self._inner.parse(response, shape)
        parsed = json.loads(body)
        headers = response["headers"]
        parsed["ResponseMetadata"] = {"RequestId": headers.get("x-amzn-requestid", ""), "HTTPStatusCode": 200,
                                      "HTTPHeaders": dict(headers), "RetryAttempts": 0}
        return parsed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class PassThroughParserFactory:
    """botocore's endpoint asks its parser factory for a parser on every response."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_parser(self, protocol: str) -> Any:
        return PassThroughParser(self._inner.create_parser(protocol))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def install_pass_through(client: Any, put_tables: tuple[str, ...] = ()) -> Any:
    """Wrap a boto3 DynamoDB client's serializer (botocore's ``_serializer`` attribute) and its
    endpoint's response parser factory (``_endpoint._response_parser_factory``)."""
    if not isinstance(client._serializer, PassThroughSerializer):
        client._serializer = PassThroughSerializer(client._serializer, put_tables=frozenset(put_tables))
    endpoint = client._endpoint
    if not isinstance(endpoint._response_parser_factory, PassThroughParserFactory):
        endpoint._response_parser_factory = PassThroughParserFactory(endpoint._response_parser_factory)
    return client
