"""Billing table: what data-privacy export and erase read and rewrite (services/privacy.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import to_item
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed
from meterbill.adapters.dynamo_usage import item_from_doc, item_pk_sk
from meterbill.ports import UsageItem
from meterbill.services.errors import Conflict


class PrivacyItems(DynamoTable):
    def customer_records(self, customer_id: str) -> list[dict[str, Any]]:
        """Every item under ``CUS#<id>``: profile, late markers, discounts, grants, audit entries."""
        return list(self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": f"CUS#{customer_id}"}}, "ConsistentRead": True}))

    def get_pending(self, customer_id: str) -> dict[str, Any] | None:
        return self._get(f"PENDING#{customer_id}", "PENDING")

    def all_invoices(self, customer_id: str) -> list[dict[str, Any]]:
        items, cursor = self.list_invoices(customer_id, 100, None)
        while cursor:
            more, cursor = self.list_invoices(customer_id, 100, cursor)
            items.extend(more)
        return items

    def all_credit_notes(self, invoice_id: str) -> list[dict[str, Any]]:
        items, cursor = self.list_credit_notes(invoice_id, 100, None)
        while cursor:
            more, cursor = self.list_credit_notes(invoice_id, 100, cursor)
            items.extend(more)
        return items

    def scrub_customer_copy(self, kind: str, doc_id: str, remove: Sequence[str], marks: Mapping[str, Any]) -> bool:
        """On an invoice or credit note: remove ``remove`` from its copy of the customer
        (``customer.<field>``) and set ``marks`` there. False if the document does not exist."""
        key = {"pk": {"S": f"INV#{doc_id}"}, "sk": {"S": "INVOICE"}} if kind == "invoice" else \
            {"pk": {"S": f"CN#{doc_id}"}, "sk": {"S": "CREDITNOTE"}}
        names = {"#c": "customer", **{f"#r{i}": f for i, f in enumerate(remove)},
                 **{f"#m{i}": f for i, f in enumerate(marks)}}
        sets = ", ".join(f"#c.#m{i} = :m{i}" for i in range(len(marks)))
        removes = ", ".join(f"#c.#r{i}" for i in range(len(remove)))
        try:
            self._c.update_item(
                TableName=self._t, Key=key, ConditionExpression="attribute_exists(pk) AND attribute_exists(#c)",
                UpdateExpression=" ".join(filter(None, [sets and f"SET {sets}", removes and f"REMOVE {removes}"])),
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": to_item({f":m{i}": v for i, v in enumerate(marks.values())})}
                   if marks else {}))
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def usage_items(self, customer_id: str) -> list[UsageItem]:
        """Every usage item of the customer (hour items and legacy quarter-hour items), overflow
        pages not read (``pages`` as stored)."""
        return [item_from_doc(d) for d in self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": f"U#{customer_id}"}}, "ConsistentRead": True})]

    def rewrite_usage_item(self, old: UsageItem, new: UsageItem, target_version: int | None) -> bool:
        """Replace item ``old`` (its pages read) by ``new``, in one step: under the same key a
        conditional put; under another key (a pseudonymised dimension group) a transaction putting
        ``new`` (absent, or at ``target_version`` when merging into it) and deleting ``old`` at its
        version. False if either changed meanwhile (read again, retry). ``new``'s values beyond
        VALUES_INLINE are paged out first, like put_usage_item; ``old``'s pages are left for
        orphan_pages."""
        if old.key == new.key and old.legacy == new.legacy:
            return self.put_usage_item(new, old.version)
        return self.replace_usage_items(new, target_version, [old])

    def orphan_pages(self, customer_id: str) -> list[tuple[str, str]]:
        """Keys of the customer's overflow pages that no usage item references (any more)."""
        referenced: set[str] = set()
        todo = [(item_pk_sk(i.key, i.legacy), p) for i in self.usage_items(customer_id)
                for pages in i.pages.values() for p in pages]
        while todo:
            referenced |= {self._page_key(k, p)[1] for k, p in todo}
            rolled = [(k, p) for k, p in todo if p[0] == "r"]
            found = {(d["pk"], d["sk"]): d for d in self._batch_get(sorted({self._page_key(k, p) for k, p in rolled}))}
            todo = [(k, q) for k, p in rolled for q in found.get(self._page_key(k, p), {}).get("vs", "").split()]
        pages = self._query_all({"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                 "ExpressionAttributeValues": {":p": {"S": f"UV#{customer_id}"}},
                                 "ProjectionExpression": "pk, sk", "ConsistentRead": True})
        return [(d["pk"], d["sk"]) for d in pages if d["sk"] not in referenced]

    def delete_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        for pk, sk in keys:
            self._c.delete_item(TableName=self._t, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def dead_letters_of(self, customer_id: str) -> list[dict[str, Any]]:
        """The dead letters naming the customer (one partition, read whole: it is kept small)."""
        return [d for d in self._query_all({"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                            "ExpressionAttributeValues": {":p": {"S": "DEADLETTER"}}})
                if d.get("customer") == customer_id]

    def set_fields(self, pk: str, sk: str, fields: Mapping[str, Any]) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        self._c.update_item(TableName=self._t, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                            ConditionExpression="attribute_exists(pk)",
                            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                            ExpressionAttributeNames=names,
                            ExpressionAttributeValues=to_item({f":f{i}": v for i, v in enumerate(fields.values())}))

    def plan_versions(self) -> list[dict[str, Any]]:
        """Every saved version of every plan (closed periods are re-rated under them)."""
        out: list[dict[str, Any]] = []
        for plan in self.all_catalog("PLAN"):
            out.extend(self._query_all({
                "TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :v)",
                "ExpressionAttributeValues": {":p": {"S": f"PLAN#{plan['code']}"}, ":v": {"S": "V#"}}}))
            out.append(plan)
        return out

    def start_erasure(self, customer_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The customer's pending erasure: created with ``doc``, or the one already pending (its
        pseudonymisation key is reused, so a retried erase maps every value the same way)."""
        try:
            self._put({**doc, "pk": "ERASURE", "sk": customer_id, "customer": customer_id}, "attribute_not_exists(pk)")
        except Conflict:
            pass
        found = self._get("ERASURE", customer_id)
        assert found is not None
        return found

    def get_erasure(self, customer_id: str) -> dict[str, Any] | None:
        return self._get("ERASURE", customer_id)

    def pending_erasures(self) -> list[dict[str, Any]]:
        return list(self._query_all({"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                     "ExpressionAttributeValues": {":p": {"S": "ERASURE"}}, "ConsistentRead": True}))

    def finish_erasure(self, customer_id: str, requested_at: str) -> None:
        """The raw events are swept: forget the pseudonymisation key, unless a newer erasure of
        the customer replaced the one swept."""
        try:
            self._c.delete_item(TableName=self._t, Key={"pk": {"S": "ERASURE"}, "sk": {"S": customer_id}},
                                ConditionExpression="requested_at = :r",
                                ExpressionAttributeValues={":r": {"S": requested_at}})
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
