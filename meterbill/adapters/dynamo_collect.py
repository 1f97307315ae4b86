"""Billing table: payments on invoices and the dunning work list (docs/integrations.md, "Payments,
terms and dunning").

Item layout (pk / sk):
  INV#<id> / PAY#<payment id>   one payment (offline, or collected by an integration): amount,
                                date, reference, source; its id is derived from the reference
  INV#<id> / INVOICE            gsi3: OPEN / <due_at>         while final and unpaid (set at commit)
                                gsi3: COLLECTIONS / <at>      after the dunning ladder's last step
The ``gsi3`` index is sparse: it holds only invoices someone still has to collect, so a dunning
tick reads the past-due ones (``gsi3sk <= as_of``) and never scans the invoices. Paid, void and
uncollectible invoices leave it (``set_invoice_status``, a full payment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import to_item
from meterbill.adapters.dynamo_invoices import outbox_put
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed

OPEN = "OPEN"
COLLECTIONS = "COLLECTIONS"


class CollectItems(DynamoTable):
    # -- payments ------------------------------------------------------------------------------------
    def get_payment(self, invoice_id: str, payment_id: str) -> dict[str, Any] | None:
        found = self._get(f"INV#{invoice_id}", f"PAY#{payment_id}")
        return None if found is None else _payment(found)

    def list_payments(self, invoice_id: str) -> list[dict[str, Any]]:
        """Every payment of one invoice, oldest first (a handful per invoice: one query)."""
        found = [_payment(p) for p in self._query_prefix(f"INV#{invoice_id}", "PAY#")]
        return sorted(found, key=lambda p: int(p.get("seq", 0)))   # the order they were recorded

    def add_payment(self, payment: Mapping[str, Any], payments_before: int, amount_due: str,
                    changes: Mapping[str, Any], at: str) -> None:
        """One transaction: the payment (once: its id is new), the invoice's ``amount_paid`` /
        ``payment_count`` (+ ``changes``: ``paid`` when it settles the balance) — only if no other
        payment or credit note moved it since it was read (``payment_count``, ``amount_due``) and
        it is still final or uncollectible — and an outbox record (action ``payment``), so every
        integration hears of it. Conflict when anything moved: re-read and try again."""
        invoice_id = payment["invoice_id"]
        names = {"#st": "status", **{f"#c{i}": k for i, k in enumerate(changes)}}
        sets = ", ".join(["payment_count = :n", *(f"#c{i} = :c{i}" for i in range(len(changes)))])
        settled = changes.get("status") == "paid"
        update = {
            "TableName": self._t, "Key": {"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
            "UpdateExpression": f"SET {sets}" + (" REMOVE gsi3pk, gsi3sk" if settled else ""),
            "ConditionExpression": ("#st IN (:final, :bad) AND amount_due = :due AND "
                                    "(attribute_not_exists(payment_count) OR payment_count = :before)"),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item({":n": payments_before + 1, ":before": payments_before,
                                                  ":final": "final", ":bad": "uncollectible", ":due": amount_due,
                                                  **{f":c{i}": v for i, v in enumerate(changes.values())}})}
        item = {**payment, "pk": f"INV#{invoice_id}", "sk": f"PAY#{payment['id']}"}
        self._transact([
            {"Put": {"TableName": self._t, "Item": to_item(item), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": update},
            outbox_put(self._t, f"payment#{payment['id']}", "payment", [invoice_id], at, payment=payment["id"])])

    # -- dunning -------------------------------------------------------------------------------------
    def past_due(self, as_of: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Open (final, unpaid) invoices whose due date is at or before ``as_of``, earliest first."""
        return self._query_index("gsi3", OPEN, limit, cursor, sk_max=as_of)

    def in_collections(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Invoices flagged for collections (the dunning ladder ran out), by when."""
        return self._query_index("gsi3", COLLECTIONS, limit, cursor)

    def record_dunning(self, invoice_id: str, step: int | None, overdue_at: str | None,
                       collections_at: str | None, at: str, step_doc: Mapping[str, Any] | None) -> None:
        """One transaction on a final invoice: ``overdue_at`` (first time only: an ``overdue``
        outbox record) and/or ladder ``step`` (only if no step at or after it is recorded: a step
        is never sent twice, whatever ticks race; a ``reminder`` outbox record), and after the
        last step ``collections_at`` (the invoice moves to the COLLECTIONS list). Conflict when
        another tick (or a payment) got there first."""
        names: dict[str, str] = {"#st": "status"}
        values: dict[str, Any] = {":final": "final"}
        sets: list[str] = []
        conditions = ["#st = :final"]
        ops: list[dict[str, Any]] = []
        if overdue_at is not None:
            sets.append("overdue_at = :od")
            values[":od"] = overdue_at
            conditions.append("attribute_not_exists(overdue_at)")
            ops.append(outbox_put(self._t, f"overdue#{invoice_id}", "overdue", [invoice_id], at))
        if step is not None:
            sets += ["dunning_step = :s", "dunning = list_append(if_not_exists(dunning, :empty), :d)"]
            values.update({":s": step, ":empty": [], ":d": [dict(step_doc or {})]})
            conditions.append("(attribute_not_exists(dunning_step) OR dunning_step < :s)")
            ops.append(outbox_put(self._t, f"reminder#{invoice_id}#{step}", "reminder", [invoice_id], at, step=step))
        if collections_at is not None:
            sets += ["collections_at = :c", "gsi3pk = :cp", "gsi3sk = :c"]
            values.update({":c": collections_at, ":cp": COLLECTIONS})
        update = {"TableName": self._t, "Key": {"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
                  "UpdateExpression": "SET " + ", ".join(sets), "ConditionExpression": " AND ".join(conditions),
                  "ExpressionAttributeNames": names, "ExpressionAttributeValues": to_item(values)}
        self._transact([{"Update": update}, *ops])

    def leave_dunning(self, invoice_id: str) -> None:
        """An invoice found on the OPEN list that is no longer final (paid, void, uncollectible by a
        path that did not remove it): take it off the list."""
        try:
            self._c.update_item(TableName=self._t, Key={"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
                                UpdateExpression="REMOVE gsi3pk, gsi3sk",
                                ConditionExpression="attribute_exists(pk) AND #st <> :final",
                                ExpressionAttributeNames={"#st": "status"},
                                ExpressionAttributeValues={":final": {"S": "final"}})
        except ClientError as exc:
            if not conditional_failed(exc):   # final again, or gone: nothing to take off
                raise


def _payment(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk")}
