"""Billing table, read for reports: invoices and customers through the indexes, page by page,
eventually consistent (half the read cost; a report may lag a write by a second), only the
attributes a report uses, and the read capacity consumed counted (``rcu``) so a report can say
what it cost. Never raw events, never usage items."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meterbill.adapters.dynamo_codec import from_item
from meterbill.adapters.dynamo_table import DynamoTable

INVOICE_FIELDS = ("id", "customer_id", "plan", "currency", "period", "status", "kind", "total", "amount_due",
                  "credits_applied", "credited_total", "issued_at", "due_at", "paid_at", "void_at",
                  "uncollectible_at")
CUSTOMER_FIELDS = ("id", "name", "plan", "currency", "timezone", "tags")


class DynamoReportReader(DynamoTable):
    """Not part of ``DynamoBillingStore``: one reader per report run, so its ``rcu`` is that report's."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)
        self.rcu = 0.0
        self.items = 0

    def invoices(self, customer_id: str | None, period_from: str, period_to: str,
                 lines: bool = False) -> Iterator[dict[str, Any]]:
        """Invoices whose billing period starts in [period_from, period_to): one customer's through
        ``gsi1`` (``CUSINV#<customer>``, sorted by period start: only the range is read), or every
        invoice through ``gsi2`` (``INVOICES``: the whole list is read, the range filtered)."""
        fields = INVOICE_FIELDS + (("lines",) if lines else ())
        names = {f"#f{i}": f for i, f in enumerate(fields)}
        kwargs: dict[str, Any] = {"TableName": self._t, "ProjectionExpression": ", ".join(names),
                                  "ExpressionAttributeNames": names, "ReturnConsumedCapacity": "TOTAL"}
        if customer_id:
            kwargs.update(IndexName="gsi1", KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :a AND :b",
                          ExpressionAttributeValues={":p": {"S": f"CUSINV#{customer_id}"},
                                                     ":a": {"S": period_from}, ":b": {"S": period_to}})
        else:
            kwargs.update(IndexName="gsi2", KeyConditionExpression="gsi2pk = :p",
                          ExpressionAttributeValues={":p": {"S": "INVOICES"}})
        for doc in self._pages(kwargs):
            start = (doc.get("period") or {}).get("start", "")
            if period_from <= start < period_to:
                yield doc

    def customers(self) -> Iterator[dict[str, Any]]:
        names = {f"#f{i}": f for i, f in enumerate(CUSTOMER_FIELDS)}
        yield from self._pages({"TableName": self._t, "IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :p",
                                "ExpressionAttributeValues": {":p": {"S": "CUSTOMERS"}},
                                "ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names,
                                "ReturnConsumedCapacity": "TOTAL"})

    def _pages(self, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            resp = self._c.query(**kwargs)
            self.rcu += float((resp.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0)
            self.items += int(resp.get("ScannedCount", len(resp.get("Items", []))))
            yield from (from_item(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": resp["LastEvaluatedKey"]}
