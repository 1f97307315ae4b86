"""DynamoDB attribute-value encoding shared by the adapters (exact decimals, no floats)."""

from __future__ import annotations

import base64
import json
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
    return {k: _de.deserialize(v) for k, v in item.items()}


def encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        from meterbill.domain.errors import InvalidField

        raise InvalidField("cursor", "is not a cursor returned by this API") from None
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


def install_pass_through(client: Any, put_tables: tuple[str, ...] = ()) -> Any:
    """Wrap a boto3 DynamoDB client's serializer (botocore's ``_serializer`` attribute)."""
    if not isinstance(client._serializer, PassThroughSerializer):
        client._serializer = PassThroughSerializer(client._serializer, put_tables=frozenset(put_tables))
    return client
