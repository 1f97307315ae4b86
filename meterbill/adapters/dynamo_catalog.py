"""Billing table: meters, plans and their versions, customers, their sub-items (late markers,
discounts, credit grants, audit entries), pending usage and the progressive-billing work list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meterbill.adapters.dynamo_codec import to_item
from meterbill.adapters.dynamo_table import SUB_ITEMS, VERSIONED, DynamoTable, change_op
from meterbill.ports import ItemChange


class CatalogItems(DynamoTable):
    def put_catalog(self, kind: str, code: str, doc: Mapping[str, Any],
                    expected_version: int | None) -> None:
        """kind: METER | PLAN. Optimistic concurrency on ``version``."""
        item = {**doc, "pk": f"{kind}#{code}", "sk": kind, "gsi1pk": f"{kind}S", "gsi1sk": code}
        if kind not in VERSIONED:
            if expected_version is None:
                self._put(item, "attribute_not_exists(pk)")
            else:
                self._put(item, "version = :v", {":v": expected_version})
            return
        # plans: the current item and an immutable copy of this version, so a closed period can
        # be re-rated with exactly the terms it was invoiced under
        current: dict[str, Any] = {"TableName": self._t, "Item": to_item(item)}
        if expected_version is None:
            current["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            current.update(ConditionExpression="version = :v",
                           ExpressionAttributeValues={":v": {"N": str(expected_version)}})
        archived = {**doc, "pk": f"{kind}#{code}", "sk": f"V#{int(doc['version']):08d}"}
        self._transact([{"Put": current}, {"Put": {"TableName": self._t, "Item": to_item(archived),
                                                   "ConditionExpression": "attribute_not_exists(pk)"}}])

    def get_catalog(self, kind: str, code: str, version: int | None = None) -> dict[str, Any] | None:
        if version is None:
            return self._get(f"{kind}#{code}", kind)
        return self._get(f"{kind}#{code}", f"V#{version:08d}")

    def list_catalog(self, kind: str, limit: int = 100, cursor: str | None = None
                     ) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi1", f"{kind}S", limit, cursor)

    def all_catalog(self, kind: str) -> list[dict[str, Any]]:
        items, cursor = self.list_catalog(kind, 1000)
        while cursor:
            more, cursor = self.list_catalog(kind, 1000, cursor)
            items.extend(more)
        return items

    def put_customer(self, doc: Mapping[str, Any], expected_version: int | None) -> None:
        item = {**doc, "pk": f"CUS#{doc['id']}", "sk": "PROFILE", "gsi1pk": "CUSTOMERS",
                "gsi1sk": doc["id"], "gsi2pk": "DUE", "gsi2sk": f"{doc['next_close']}#{doc['id']}"}
        if expected_version is None:
            self._put(item, "attribute_not_exists(pk)")
        else:
            self._put(item, "version = :v", {":v": expected_version})

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        return self._get(f"CUS#{customer_id}", "PROFILE")

    def get_customers(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        found = self._batch_get([(f"CUS#{i}", "PROFILE") for i in ids])
        return {d["id"]: d for d in found}

    def list_customers(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi1", "CUSTOMERS", limit, cursor)

    def due_customers(self, as_of_iso: str, limit: int = 100, cursor: str | None = None
                      ) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi2", "DUE", limit, cursor, sk_max=as_of_iso + "~")

    def fence_close(self, customer_id: str, through_iso: str) -> None:
        """A billing run is about to read the customer's usage up to ``through_iso`` to finalize
        it. Does not change the profile's version (the invoice commit's condition)."""
        self._advance(f"CUS#{customer_id}", "PROFILE", "closing_through", through_iso)

    def note_pending(self, customer_id: str, events: int, first_ms: int, at_iso: str) -> None:
        """Usage arrived for a customer that does not exist yet (one write per customer per batch)."""
        self._c.update_item(
            TableName=self._t, Key={"pk": {"S": f"PENDING#{customer_id}"}, "sk": {"S": "PENDING"}},
            UpdateExpression="SET customer = :c, gsi1pk = :g, gsi1sk = :c, last_seen = :a, "
                             "first_event_ms = if_not_exists(first_event_ms, :f) ADD events :n",
            ExpressionAttributeValues={":c": {"S": customer_id}, ":g": {"S": "PENDING"}, ":a": {"S": at_iso},
                                       ":f": {"N": str(first_ms)}, ":n": {"N": str(events)}})

    def clear_pending(self, customer_id: str) -> None:
        self._c.delete_item(TableName=self._t, Key={"pk": {"S": f"PENDING#{customer_id}"}, "sk": {"S": "PENDING"}})

    def set_progressive(self, customer_id: str, enabled: bool) -> None:
        """Keep the work list of customers billed by threshold (read by every billing run)."""
        key = {"pk": {"S": f"PROG#{customer_id}"}, "sk": {"S": "PROG"}}
        if enabled:
            self._c.put_item(TableName=self._t, Item={**key, "customer": {"S": customer_id},
                                                      "gsi1pk": {"S": "PROGRESSIVE"}, "gsi1sk": {"S": customer_id}})
        else:
            self._c.delete_item(TableName=self._t, Key=key)

    def progressive_customers(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        items, nxt = self._query_index("gsi1", "PROGRESSIVE", limit, cursor)
        return [i["customer"] for i in items], nxt

    def list_pending(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi1", "PENDING", limit, cursor)

    def mark_late(self, customer_id: str, period_start_iso: str, at_iso: str) -> None:
        self._c.update_item(TableName=self._t,
                            Key={"pk": {"S": f"CUS#{customer_id}"}, "sk": {"S": f"LATE#{period_start_iso}"}},
                            UpdateExpression="SET updated_at = :a ADD late_batches :one",
                            ExpressionAttributeValues={":a": {"S": at_iso}, ":one": {"N": "1"}})

    def customer_items(self, kind: str, customer_id: str) -> list[dict[str, Any]]:
        return list(self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": {"S": f"CUS#{customer_id}"}, ":s": {"S": SUB_ITEMS[kind]}},
            "ConsistentRead": True}))

    def put_customer_item(self, kind: str, customer_id: str, key: str, doc: Mapping[str, Any]) -> None:
        """Create once; Conflict if an item with that key exists."""
        self._put({**doc, "pk": f"CUS#{customer_id}", "sk": SUB_ITEMS[kind] + key}, "attribute_not_exists(pk)")

    def apply_changes(self, changes: Sequence[ItemChange]) -> None:
        self._transact([change_op(self._t, ch) for ch in changes])
