"""Billing table: invoices (drafts, final, status changes), credit notes and their gapless
number sequences, committed with the changes they make in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import from_item, to_item
from meterbill.adapters.dynamo_table import DynamoTable, change_op, conditional_failed
from meterbill.ports import ItemChange
from meterbill.services.errors import Conflict

NUMBERING = "NUMBERING"   # committed invoices waiting for their gapless number, by commit time
OUTBOX_TTL_S = 35 * 86_400  # the fan-out reads the stream within seconds; the item is kept to audit


def outbox_put(table: str, outbox_id: str, action: str, invoices: Sequence[str], at: str,
               **extra: Any) -> dict[str, Any]:
    """The outbox record of one transition, put in the transaction that makes it: the billing
    table's stream (filtered to ``pk`` prefix ``OUTBOX#``) carries it to the fan-out function,
    which queues one message per invoice for every enabled integration (docs/integrations.md).
    Its id is deterministic (the transition it records): a retried transaction writes the same."""
    expires = int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()) + OUTBOX_TTL_S
    item = {"pk": f"OUTBOX#{outbox_id}", "sk": "OUTBOX", "id": outbox_id, "action": action,
            "invoices": list(invoices), "at": at, "expires_at": expires, **extra}
    return {"Put": {"TableName": table, "Item": to_item(item)}}


def _owed(invoice: Mapping[str, Any]) -> bool:
    try:
        return Decimal(str(invoice.get("amount_due", invoice.get("total", "0")))) > 0
    except ArithmeticError:
        return False


class InvoiceItems(DynamoTable):
    def invoice_counter(self) -> int:
        doc = self._get("COUNTER#invoice", "COUNTER")
        return int(doc["n"]) if doc else 0

    def commit_invoice(self, invoice: Mapping[str, Any], customer_id: str, customer_version: int,
                       customer_changes: Mapping[str, Any], changes: Sequence[ItemChange] = ()) -> None:
        """Atomically: store the invoice (once; status ``finalizing``, no number yet), queue it for
        numbering (a ``NUMBERING`` item), advance the customer's closed-through mark, and apply
        ``changes`` (discounts used, credits drawn, late usage settled). All or nothing. The gapless
        number comes later from :meth:`number_invoices`: the customers' closes never contend on the
        one counter (docs/decisions.md, "Invoice numbers at scale")."""
        names = {f"#k{i}": k for i, k in enumerate(customer_changes)}
        values = {f":v{i}": v for i, v in enumerate(customer_changes.values())}
        sets = ", ".join(f"#k{i} = :v{i}" for i in range(len(customer_changes)))
        customer_update = {
            "TableName": self._t, "Key": {"pk": {"S": f"CUS#{customer_id}"}, "sk": {"S": "PROFILE"}},
            "UpdateExpression": f"SET {sets}, version = :nv",
            "ConditionExpression": "version = :cv",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**to_item(values), ":nv": {"N": str(customer_version + 1)},
                                          ":cv": {"N": str(customer_version)}},
        }
        queued = f"{invoice['created_at']}#{invoice['id']}"
        item = self._invoice_item(invoice, customer_id, f"~finalizing#{queued}")
        if _owed(invoice):   # on the dunning work list until paid, void or uncollectible (dynamo_collect.py)
            item.update(gsi3pk="OPEN", gsi3sk=invoice["due_at"])
        marker = {"pk": NUMBERING, "sk": queued, "invoice": invoice["id"]}
        try:
            self._c.transact_write_items(TransactItems=[
                {"Put": {"TableName": self._t, "Item": to_item(item), **self._unless_final}},
                {"Put": {"TableName": self._t, "Item": to_item(marker)}},
                {"Update": customer_update},
                *(change_op(self._t, ch) for ch in changes),
            ])
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict("invoice or customer changed concurrently") from exc
            raise

    def invoices_to_number(self, limit: int) -> list[tuple[str, str]]:
        """(queue key, invoice id) of committed invoices waiting for their number, oldest first."""
        resp = self._c.query(TableName=self._t, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": NUMBERING}}, Limit=limit, ConsistentRead=True)
        return [(i["sk"]["S"], i["invoice"]["S"]) for i in resp.get("Items", [])]

    def number_invoices(self, first_seq: int, numbered: Sequence[tuple[str, str, str]], at: str) -> None:
        """One transaction: take numbers ``first_seq``.. of the gapless sequence and give them to
        ``numbered`` — (queue key, invoice id, number text) in order — making each invoice final
        and listing it by number, and one outbox record listing them all (``push``: 1 + 2 per
        invoice + 1 items, so at most 49 invoices fit the 100-item transaction). Conflict if the
        counter moved (another numbering pass) or an invoice is no longer waiting (its queue entry
        is then dropped)."""
        ops: list[dict[str, Any]] = [{"Update": self._counter_update("invoice", first_seq + len(numbered) - 1,
                                                                     first_seq - 1)}]
        for i, (queued, inv_id, number) in enumerate(numbered):
            ops.append({"Update": {
                "TableName": self._t, "Key": {"pk": {"S": f"INV#{inv_id}"}, "sk": {"S": "INVOICE"}},
                "UpdateExpression": "SET #n = :n, #st = :final, gsi2sk = :o, numbered_at = :at",
                "ConditionExpression": "#st = :finalizing",
                "ExpressionAttributeNames": {"#n": "number", "#st": "status"},
                "ExpressionAttributeValues": to_item({":n": number, ":final": "final", ":finalizing": "finalizing",
                                                      ":o": f"{first_seq + i:012d}", ":at": at})}})
            ops.append({"Delete": {"TableName": self._t, "Key": {"pk": {"S": NUMBERING}, "sk": {"S": queued}}}})
        ops.append(outbox_put(self._t, f"push#{first_seq:012d}", "push", [inv for _, inv, _ in numbered], at))
        try:
            self._c.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            reasons = exc.response.get("CancellationReasons") or []
            stale = [numbered[(i - 1) // 2][0] for i, r in enumerate(reasons)
                     if 0 < i <= 2 * len(numbered) and i % 2 and r.get("Code") == "ConditionalCheckFailed"]
            for queued in stale:  # not a finalizing invoice (numbered already, or gone): nothing to number
                self._c.delete_item(TableName=self._t, Key={"pk": {"S": NUMBERING}, "sk": {"S": queued}})
            raise Conflict("the invoice counter moved (another numbering pass); retry") from exc

    def _counter_update(self, name: str, seq: int, prev: int | None = None) -> dict[str, Any]:
        """Take numbers up to ``seq`` of a gapless sequence: only if ``prev`` (default ``seq - 1``)
        is the last one taken."""
        prev = seq - 1 if prev is None else prev
        update: dict[str, Any] = {
            "TableName": self._t, "Key": {"pk": {"S": f"COUNTER#{name}"}, "sk": {"S": "COUNTER"}},
            "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": str(seq)}}}
        if prev == 0:
            update["ConditionExpression"] = "attribute_not_exists(n) OR n = :z"
            update["ExpressionAttributeValues"][":z"] = {"N": "0"}
        else:
            update["ConditionExpression"] = "n = :prev"
            update["ExpressionAttributeValues"][":prev"] = {"N": str(prev)}
        return update

    def credit_note_counter(self) -> int:
        doc = self._get("COUNTER#credit_note", "COUNTER")
        return int(doc["n"]) if doc else 0

    def commit_credit_note(self, note: Mapping[str, Any], number_seq: int, changes: Sequence[ItemChange]) -> None:
        """Store the credit note once with its gapless number, and apply ``changes`` (the invoice
        credited, a credit balance granted). All or nothing."""
        item = {**note, "pk": f"CN#{note['id']}", "sk": "CREDITNOTE", "gsi1pk": f"CN#{note['invoice_id']}",
                "gsi1sk": f"{number_seq:012d}", "gsi2pk": "CREDITNOTES", "gsi2sk": f"{number_seq:012d}"}
        self._transact([
            {"Put": {"TableName": self._t, "Item": to_item(item), "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": self._counter_update("credit_note", number_seq)},
            *(change_op(self._t, ch) for ch in changes),
            outbox_put(self._t, f"credit_note#{note['id']}", "credit_note", [note["invoice_id"]],
                       note["created_at"], credit_note=note["id"])])

    def get_credit_note(self, note_id: str) -> dict[str, Any] | None:
        return self._get(f"CN#{note_id}", "CREDITNOTE")

    def list_credit_notes(self, invoice_id: str | None, limit: int, cursor: str | None
                          ) -> tuple[list[dict[str, Any]], str | None]:
        if invoice_id:
            return self._query_index("gsi1", f"CN#{invoice_id}", limit, cursor)
        return self._query_index("gsi2", "CREDITNOTES", limit, cursor)

    # a draft may be replaced (re-rated, or finalized); a final invoice never
    _unless_final: Mapping[str, Any] = {
        "ConditionExpression": "attribute_not_exists(pk) OR #st = :draft",
        "ExpressionAttributeNames": {"#st": "status"},
        "ExpressionAttributeValues": {":draft": {"S": "draft"}}}

    @staticmethod
    def _invoice_item(invoice: Mapping[str, Any], customer_id: str, order_key: str) -> dict[str, Any]:
        return {**invoice, "pk": f"INV#{invoice['id']}", "sk": "INVOICE",
                "gsi1pk": f"CUSINV#{customer_id}", "gsi1sk": invoice["period"]["start"],
                "gsi2pk": "INVOICES", "gsi2sk": order_key}

    def save_draft(self, invoice: Mapping[str, Any], customer_id: str) -> None:
        """Create or refresh a draft; never touches a finalized invoice. Drafts list after
        numbered invoices (gsi2 order key '~draft#…')."""
        item = self._invoice_item(invoice, customer_id, f"~draft#{invoice['period']['start']}#{customer_id}")
        try:
            self._c.put_item(TableName=self._t, Item=to_item(item), **self._unless_final)
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict(f"invoice {invoice['id']} is already final") from exc
            raise

    def set_invoice_status(self, invoice_id: str, allowed_from: Iterable[str], status: str,
                           changes: Mapping[str, Any], outbox_at: str | None = None) -> dict[str, Any]:
        """Move an invoice to ``status`` only if it is in one of ``allowed_from`` (atomic). With
        ``outbox_at``, an outbox record of the transition (action = ``status``: ``paid``,
        ``void``) is written in the same transaction, so the integrations hear of it."""
        allowed = sorted(allowed_from)
        values = {f":f{i}": v for i, v in enumerate(allowed)}
        names = {"#st": "status", **{f"#c{i}": k for i, k in enumerate(changes)}}
        sets = ", ".join(["#st = :to", *(f"#c{i} = :c{i}" for i in range(len(changes)))])
        update = {
            "TableName": self._t, "Key": {"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
            # paid, void, uncollectible: off the dunning work list (dynamo_collect.py)
            "UpdateExpression": f"SET {sets}" + ("" if status == "final" else " REMOVE gsi3pk, gsi3sk"),
            "ConditionExpression": f"attribute_exists(pk) AND #st IN ({', '.join(values)})",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item({**values, ":to": status,
                                                  **{f":c{i}": v for i, v in enumerate(changes.values())}})}
        try:
            if outbox_at is None:
                resp = self._c.update_item(**update, ReturnValues="ALL_NEW")
                return from_item(resp["Attributes"])
            self._c.transact_write_items(TransactItems=[
                {"Update": update}, outbox_put(self._t, f"{status}#{invoice_id}", status, [invoice_id], outbox_at)])
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict(f"invoice {invoice_id} is not in a state that allows this "
                               f"(allowed from: {', '.join(allowed)})", field="status") from exc
            raise
        return self.get_invoice(invoice_id) or {}

    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        return self._get(f"INV#{invoice_id}", "INVOICE")

    def list_invoices(self, customer_id: str | None, limit: int, cursor: str | None
                      ) -> tuple[list[dict[str, Any]], str | None]:
        if customer_id:
            return self._query_index("gsi1", f"CUSINV#{customer_id}", limit, cursor)
        return self._query_index("gsi2", "INVOICES", limit, cursor)
