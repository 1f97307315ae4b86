"""Billing table: API keys (SHA-256 digests only), their public ids, expiry and revocation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from meterbill.adapters.dynamo_codec import from_item
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed


def _key_doc(item: Mapping[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in item.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}
    doc["digest"] = str(item["pk"])[len("KEY#"):]
    return doc


class KeyItems(DynamoTable):
    # KEY#<sha256> / KEY, gsi1: KEYS / <public id>. Docs handed out carry "digest" (never the pk).
    def put_key(self, digest: str, doc: Mapping[str, Any]) -> None:
        listed = {"gsi1pk": "KEYS", "gsi1sk": doc["id"]} if doc.get("id") else {}
        self._put({**doc, **listed, "pk": f"KEY#{digest}", "sk": "KEY"}, "attribute_not_exists(pk)")

    def get_key(self, digest: str) -> dict[str, Any] | None:
        # strongly consistent: a revocation is seen by the next read, so the cache TTL is the whole bound
        found = self._get(f"KEY#{digest}", "KEY", consistent=True)
        return None if found is None else _key_doc(found)

    def list_keys(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        items, nxt = self._query_index("gsi1", "KEYS", limit, cursor)
        return [_key_doc(i) for i in items], nxt

    def find_key(self, key_id: str) -> dict[str, Any] | None:
        resp = self._c.query(TableName=self._t, IndexName="gsi1",
                             KeyConditionExpression="gsi1pk = :p AND gsi1sk = :i",
                             ExpressionAttributeValues={":p": {"S": "KEYS"}, ":i": {"S": key_id}})
        items = resp.get("Items", [])
        return _key_doc(from_item(items[0])) if items else None

    def revoke_key(self, digest: str, at_iso: str) -> dict[str, Any]:
        """Set revoked_at once (a second revoke keeps the first time); NotFound-free: the key exists."""
        resp = self._c.update_item(
            TableName=self._t, Key={"pk": {"S": f"KEY#{digest}"}, "sk": {"S": "KEY"}},
            UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :t)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":t": {"S": at_iso}}, ReturnValues="ALL_NEW")
        return _key_doc(from_item(resp["Attributes"]))

    def touch_key(self, digest: str, at_iso: str) -> None:
        """Record a use (last_used_at moves forward only)."""
        self._advance(f"KEY#{digest}", "KEY", "last_used_at", at_iso)

    def unlisted_keys(self) -> list[dict[str, Any]]:
        """Keys stored before they had a public id (one Scan of the whole table: a migration)."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._t, "FilterExpression": "begins_with(pk, :k) AND sk = :s AND attribute_not_exists(#i)",
            "ExpressionAttributeNames": {"#i": "id"}, "ExpressionAttributeValues": {":k": {"S": "KEY#"}, ":s": {"S": "KEY"}}}
        while True:
            resp = self._c.scan(**kwargs)
            out.extend(_key_doc(from_item(i)) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def assign_key_id(self, digest: str, key_id: str) -> bool:
        """Give a key stored without one its public id and list it; False if it already had one."""
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"KEY#{digest}"}, "sk": {"S": "KEY"}},
                UpdateExpression="SET #i = :i, gsi1pk = :p, gsi1sk = :i REMOVE #x",  # drop the old secret prefix
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#i)",
                ExpressionAttributeNames={"#i": "id", "#x": "prefix"},
                ExpressionAttributeValues={":i": {"S": key_id}, ":p": {"S": "KEYS"}})
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True
