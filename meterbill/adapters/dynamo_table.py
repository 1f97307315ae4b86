"""The billing table's common access: one client, one table name, the conditional put, paged
queries, batched strongly consistent reads and transactions every aggregate's items use (item
layout: meterbill/adapters/dynamo_billing.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.ports import ItemChange
from meterbill.services.errors import Conflict


BATCH_GET = 100
MAX_ATTEMPTS = 8
VERSIONED = frozenset({"PLAN"})
SUB_ITEMS = {"late": "LATE#", "discount": "DISC#", "grant": "GRANT#", "audit": "AUDIT#"}


class ThrottledError(RuntimeError):
    """Storage is throttling; the caller's retry (Lambda, client) will try again."""


def change_key(ch: ItemChange) -> dict[str, Any]:
    if ch.kind == "invoice":
        return {"pk": {"S": f"INV#{ch.owner}"}, "sk": {"S": "INVOICE"}}
    return {"pk": {"S": f"CUS#{ch.owner}"}, "sk": {"S": SUB_ITEMS[ch.kind] + ch.key}}


def change_op(table: str, ch: ItemChange) -> dict[str, Any]:
    """ItemChange -> one TransactWriteItems entry (conditional put, update or delete)."""
    key = change_key(ch)
    if ch.create:
        return {"Put": {"TableName": table, "Item": {**to_item(ch.set or {}), **key},
                        "ConditionExpression": "attribute_not_exists(pk)"}}
    names = {f"#e{i}": k for i, k in enumerate(ch.expect)}
    values = {f":e{i}": v for i, v in enumerate(ch.expect.values())}
    cond = " AND ".join(["attribute_exists(pk)", *(
        f"attribute_not_exists(#e{i})" if v is None else f"#e{i} = :e{i}" for i, v in enumerate(ch.expect.values()))])
    values = {k: v for k, v in values.items() if v is not None}
    op: dict[str, Any] = {"TableName": table, "Key": key, "ConditionExpression": cond}
    if ch.set is None:
        kind = "Delete"
    else:
        kind = "Update"
        names.update({f"#s{i}": k for i, k in enumerate(ch.set)})
        values.update({f":s{i}": v for i, v in enumerate(ch.set.values()) if v is not None})
        sets = [f"#s{i} = :s{i}" for i, v in enumerate(ch.set.values()) if v is not None]
        removes = [f"#s{i}" for i, v in enumerate(ch.set.values()) if v is None]
        op["UpdateExpression"] = " ".join(filter(None, [sets and "SET " + ", ".join(sets),
                                                        removes and "REMOVE " + ", ".join(removes)]))
    if names:
        op["ExpressionAttributeNames"] = names
    if values:
        op["ExpressionAttributeValues"] = to_item(values)
    return {kind: op}


def conditional_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class DynamoTable:
    def __init__(self, client: Any, table: str) -> None:
        self._c = client
        self._t = table

    def _get(self, pk: str, sk: str, consistent: bool = True) -> dict[str, Any] | None:
        resp = self._c.get_item(TableName=self._t, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                ConsistentRead=consistent)
        return from_item(resp["Item"]) if "Item" in resp else None

    def _put(self, doc: Mapping[str, Any], condition: str | None = None,
             values: Mapping[str, Any] | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self._t, "Item": to_item(doc)}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = to_item(values)
        try:
            self._c.put_item(**kwargs)
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict("the item changed concurrently; retry") from exc
            raise

    def _query_index(self, index: str, pk: str, limit: int, cursor: str | None,
                     sk_max: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        cond = f"{index}pk = :p"
        values: dict[str, Any] = {":p": {"S": pk}}
        if sk_max is not None:
            cond += f" AND {index}sk <= :m"
            values[":m"] = {"S": sk_max}
        kwargs: dict[str, Any] = {"TableName": self._t, "IndexName": index,
                                  "KeyConditionExpression": cond,
                                  "ExpressionAttributeValues": values, "Limit": limit}
        start = decode_cursor(cursor, {"pk": None, "sk": None, f"{index}pk": pk, f"{index}sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [from_item(i) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    def _advance(self, pk: str, sk: str, attribute: str, value: str) -> None:
        """Set a string attribute of an existing item, forward only (an older value never overwrites a
        newer one; a missing item is left missing)."""
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": pk}, "sk": {"S": sk}}, UpdateExpression="SET #a = :v",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(#a) OR #a < :v)",
                ExpressionAttributeNames={"#a": attribute}, ExpressionAttributeValues={":v": {"S": value}})
        except ClientError as exc:
            if not conditional_failed(exc):
                raise

    def _batch_get(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), BATCH_GET):
            request = {self._t: {"Keys": [{"pk": {"S": p}, "sk": {"S": s}} for p, s in keys[i:i + BATCH_GET]],
                                 "ConsistentRead": True}}
            for attempt in range(MAX_ATTEMPTS):
                resp = self._c.batch_get_item(RequestItems=request)
                out.extend(from_item(it) for it in resp["Responses"].get(self._t, []))
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise ThrottledError("DynamoDB kept returning unprocessed keys; retry later")
        return out

    def _query_all(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item a query matches, page after page."""
        while True:
            resp = self._c.query(**kwargs)
            yield from (from_item(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": resp["LastEvaluatedKey"]}

    def _query_prefix(self, pk: str, sk_prefix: str) -> list[dict[str, Any]]:
        """Every item of partition ``pk`` whose sort key begins with ``sk_prefix``, all pages."""
        return list(self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": {"S": pk}, ":s": {"S": sk_prefix}}}))

    def _transact(self, ops: list[dict[str, Any]]) -> None:
        try:
            self._c.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict("a stored item changed concurrently; retry") from exc
            raise
