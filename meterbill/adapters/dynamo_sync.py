"""Billing table: sync records — one per (invoice, integration, action) — and the customer's
reference in each integration.

``INV#<invoice> / SYNC#<integration>`` is the invoice's push; a later transition (void, paid,
credit note) has its own record ``SYNC#<integration>#<outbox id>``, so the same state machine
covers every call to a vendor: ``pending`` → ``in_flight`` → ``synced`` | ``failed`` | ``unknown``.
Every move is a conditional write: ``claim`` takes a record only from ``pending``/``unknown`` (or
from an ``in_flight`` whose lease ran out: its holder died), ``finish`` only with the claim's token.
A failed record is listed in the sparse index ``gsi2`` (``SYNCFAILED``) for ``meterbill sync --failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import from_item, to_item
from meterbill.adapters.dynamo_invoices import outbox_put
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed
from meterbill.domain.webhooks import event_outbox_id
from meterbill.services.errors import Conflict

FAILED_INDEX_PK = "SYNCFAILED"


def sync_sk(integration: str, action_key: str = "") -> str:
    return f"SYNC#{integration}" + (f"#{action_key}" if action_key else "")


class SyncItems(DynamoTable):
    def get_sync(self, invoice_id: str, integration: str, action_key: str = "") -> dict[str, Any] | None:
        return self._get(f"INV#{invoice_id}", sync_sk(integration, action_key))

    def invoice_syncs(self, invoice_id: str) -> list[dict[str, Any]]:
        """Every sync record of one invoice (all integrations, all actions)."""
        return self._query_prefix(f"INV#{invoice_id}", "SYNC#")

    def claim_sync(self, invoice_id: str, integration: str, action_key: str, doc: Mapping[str, Any],
                   token: str, now: str, lease_until: str) -> dict[str, Any] | None:
        """Take the record for one attempt (creating it ``pending`` → ``in_flight`` on first use):
        only from ``pending`` or ``unknown``, or from ``in_flight`` whose lease ended before ``now``.
        Returns the record as it was (None if new); Conflict if it is not claimable."""
        fixed = {k: v for k, v in doc.items() if k not in ("status", "token", "lease_until", "updated_at", "attempts")}
        names = {"#st": "status", **{f"#f{i}": k for i, k in enumerate(fixed)}}
        values = {":fl": "in_flight", ":p": "pending", ":u": "unknown", ":t": token, ":now": now,
                  ":lease": lease_until, ":one": 1, **{f":f{i}": v for i, v in enumerate(fixed.values())}}
        sets = ", ".join(["#st = :fl", "#tk = :t", "lease_until = :lease", "updated_at = :now",
                          *(f"#f{i} = if_not_exists(#f{i}, :f{i})" for i in range(len(fixed)))])
        names["#tk"] = "token"
        try:
            resp = self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": sync_sk(integration, action_key)}},
                UpdateExpression=f"SET {sets} ADD attempts :one",
                ConditionExpression="attribute_not_exists(pk) OR #st IN (:p, :u) OR (#st = :fl AND lease_until < :now)",
                ExpressionAttributeNames=names, ExpressionAttributeValues=to_item(values), ReturnValues="ALL_OLD")
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict(f"sync of invoice {invoice_id} to {integration} is held or done") from exc
            raise
        old = resp.get("Attributes")
        return from_item(old) if old else None

    def finish_sync(self, invoice_id: str, integration: str, action_key: str, token: str, status: str,
                    fields: Mapping[str, Any], now: str, event: Mapping[str, Any] | None = None) -> bool:
        """Move a claimed record to ``status`` (with ``fields``; None removes one) — only while this
        claim (``token``) still holds it. False if it does not (the lease ran out and another took it).
        ``event``: an event's outbox record (``sync.failed``) written in the same transaction."""
        sets = {k: v for k, v in fields.items() if v is not None}
        removes = [k for k, v in fields.items() if v is None]
        names = {"#st": "status", "#tk": "token", **{f"#s{i}": k for i, k in enumerate(sets)},
                 **{f"#r{i}": k for i, k in enumerate(removes)}}
        values = {":to": status, ":t": token, ":fl": "in_flight", ":now": now,
                  **{f":s{i}": v for i, v in enumerate(sets.values())}}
        expr = "SET " + ", ".join(["#st = :to", "updated_at = :now", *(f"#s{i} = :s{i}" for i in range(len(sets)))])
        remove = ["#tk", "lease_until", *(f"#r{i}" for i in range(len(removes)))]
        if status == "failed":
            expr += ", gsi2pk = :fi, gsi2sk = :now"
            values[":fi"] = FAILED_INDEX_PK
        else:
            remove += ["gsi2pk", "gsi2sk"]
        update = {"TableName": self._t,
                  "Key": {"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": sync_sk(integration, action_key)}},
                  "UpdateExpression": f"{expr} REMOVE {', '.join(remove)}",
                  "ConditionExpression": "#st = :fl AND #tk = :t",
                  "ExpressionAttributeNames": names, "ExpressionAttributeValues": to_item(values)}
        try:
            if event is None:
                self._c.update_item(**update)
            else:
                self._c.transact_write_items(TransactItems=[
                    {"Update": update}, outbox_put(self._t, event_outbox_id(event), "event", [], now, **event)])
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def reopen_sync(self, invoice_id: str, integration: str, action_key: str, now: str) -> bool:
        """A re-drive: ``failed`` → ``pending`` (conditional). False if the record is not failed."""
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": sync_sk(integration, action_key)}},
                UpdateExpression="SET #st = :p, updated_at = :now REMOVE gsi2pk, gsi2sk",
                ConditionExpression="#st = :f", ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=to_item({":p": "pending", ":f": "failed", ":now": now}))
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def failed_syncs(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._query_index("gsi2", FAILED_INDEX_PK, limit, cursor)

    def get_customer_ref(self, customer_id: str, integration: str) -> dict[str, Any] | None:
        return self._get(f"CUS#{customer_id}", sync_sk(integration))

    def put_customer_ref(self, customer_id: str, integration: str, ref: Mapping[str, Any]) -> None:
        self._c.put_item(TableName=self._t, Item=to_item({**ref, "pk": f"CUS#{customer_id}",
                                                           "sk": sync_sk(integration), "integration": integration}))

    def set_payment_url(self, invoice_id: str, url: str) -> None:
        """The collecting integration's hosted page becomes the invoice's ``payment_url``."""
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
                UpdateExpression="SET payment_url = :u", ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":u": {"S": url}})
        except ClientError as exc:
            if not conditional_failed(exc):
                raise

    # -- inbound webhooks: de-duplicated by the vendor's event id ---------------------------------
    def webhook_seen(self, integration: str, event_id: str) -> bool:
        return self._get(f"WEBHOOK#{integration}#{event_id}", "WEBHOOK") is not None

    def remember_webhook(self, integration: str, event_id: str, doc: Mapping[str, Any]) -> bool:
        """Record an applied event (conditional put; TTL ``expires_at`` ≥ 35 days, longer than the
        vendor retries). False if it was already recorded."""
        try:
            self._c.put_item(TableName=self._t, Item=to_item({**doc, "pk": f"WEBHOOK#{integration}#{event_id}",
                                                              "sk": "WEBHOOK"}),
                             ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def set_payment_status(self, invoice_id: str, status: str, at: str) -> None:
        """The collecting system's view of the invoice (payment_failed, action_required…)."""
        self._c.update_item(
            TableName=self._t, Key={"pk": {"S": f"INV#{invoice_id}"}, "sk": {"S": "INVOICE"}},
            UpdateExpression="SET payment_status = :s, payment_status_at = :at",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_item({":s": status, ":at": at}))
