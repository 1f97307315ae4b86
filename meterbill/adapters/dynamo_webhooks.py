"""Billing table: outbound webhook endpoints, their secrets, their deliveries, and the outbox
record of an emitted event (docs/integrations.md, "Outbound webhooks").

  WHEP / EP#<endpoint>                  an endpoint: url, event types, enabled (no secret)
  WHEP#<endpoint> / SECRET              its signing secrets (``whsec_…``; the old one until it expires)
  WHEP#<endpoint> / DLV#<event at>#<msg id>   one delivery of one event: pending → in_flight →
                                        delivered | failed (claimed and finished conditionally)
  OUTBOX#event#<type>#<dedupe key> / OUTBOX   an emitted event (``emit``), put once

Secrets live in their own item so no listing or GET ever reads them; the table is encrypted at
rest (docs/decisions.md, "Webhook secrets").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.adapters.dynamo_invoices import outbox_put
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed
from meterbill.services.errors import Conflict

ENDPOINTS = "WHEP"


def _endpoint_key(endpoint_id: str) -> dict[str, Any]:
    return {"pk": {"S": ENDPOINTS}, "sk": {"S": f"EP#{endpoint_id}"}}


class WebhookItems(DynamoTable):
    # -- endpoints ---------------------------------------------------------------------------------
    def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        return self._get(ENDPOINTS, f"EP#{endpoint_id}")

    def create_endpoint(self, endpoint: Mapping[str, Any], secrets: list[dict[str, Any]]) -> bool:
        """The endpoint and its secrets, both or neither; False if the endpoint exists already."""
        try:
            self._c.transact_write_items(TransactItems=[
                {"Put": {"TableName": self._t, "Item": to_item({**endpoint, "pk": ENDPOINTS,
                                                                  "sk": f"EP#{endpoint['id']}"}),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self._t, "Item": to_item({"pk": f"WHEP#{endpoint['id']}", "sk": "SECRET",
                                                                  "secrets": secrets})}}])
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def update_endpoint(self, endpoint_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set ``changes`` on an existing endpoint (None removes a field); its new state
        (Conflict if it does not exist)."""
        names = {f"#k{i}": k for i, k in enumerate(changes)}
        values = {f":v{i}": v for i, v in enumerate(changes.values()) if v is not None}
        removes = [f"#k{i}" for i, v in enumerate(changes.values()) if v is None]
        try:
            resp = self._c.update_item(
                TableName=self._t, Key=_endpoint_key(endpoint_id),
                UpdateExpression="SET " + ", ".join(f"#k{i} = :v{i}" for i, v in enumerate(changes.values())
                                                    if v is not None)
                                 + (" REMOVE " + ", ".join(removes) if removes else ""),
                ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values), ReturnValues="ALL_NEW")
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict(f"webhook endpoint {endpoint_id} does not exist") from exc
            raise
        return from_item(resp["Attributes"])

    def list_endpoints(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": ENDPOINTS}}, "Limit": limit}
        start = decode_cursor(cursor, {"pk": ENDPOINTS, "sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [from_item(i) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    def all_endpoints(self) -> list[dict[str, Any]]:
        return list(self._query_all({"TableName": self._t, "KeyConditionExpression": "pk = :p",
                                     "ExpressionAttributeValues": {":p": {"S": ENDPOINTS}}}))

    def get_endpoint_secrets(self, endpoint_id: str) -> list[dict[str, Any]]:
        found = self._get(f"WHEP#{endpoint_id}", "SECRET")
        return list(found["secrets"]) if found else []

    def put_endpoint_secrets(self, endpoint_id: str, secrets: list[dict[str, Any]]) -> None:
        self._c.put_item(TableName=self._t, Item=to_item({"pk": f"WHEP#{endpoint_id}", "sk": "SECRET",
                                                           "secrets": secrets}))

    # -- deliveries --------------------------------------------------------------------------------
    def create_delivery(self, delivery: Mapping[str, Any]) -> bool:
        """Put a delivery once (``pending``); False if this (event, endpoint) has one already."""
        try:
            self._put({**delivery, "pk": f"WHEP#{delivery['endpoint_id']}"}, "attribute_not_exists(pk)")
        except Conflict:
            return False
        return True

    def get_delivery(self, endpoint_id: str, sk: str) -> dict[str, Any] | None:
        return self._get(f"WHEP#{endpoint_id}", sk)

    def claim_delivery(self, endpoint_id: str, sk: str, token: str, now: str, lease_until: str) -> dict[str, Any]:
        """``pending`` (or ``in_flight`` whose lease ended before ``now``) → ``in_flight`` for one
        attempt, counting it. The record as it now is; Conflict if it is held, settled or missing."""
        try:
            resp = self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"WHEP#{endpoint_id}"}, "sk": {"S": sk}},
                UpdateExpression="SET #st = :fl, #tk = :t, lease_until = :lease, last_attempt_at = :now ADD attempts :one",
                ConditionExpression="#st = :p OR (#st = :fl AND lease_until < :now)",
                ExpressionAttributeNames={"#st": "status", "#tk": "token"},
                ExpressionAttributeValues=to_item({":fl": "in_flight", ":p": "pending", ":t": token, ":now": now,
                                                   ":lease": lease_until, ":one": 1}),
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if conditional_failed(exc):
                raise Conflict(f"delivery {sk} is held, settled or missing") from exc
            raise
        return from_item(resp["Attributes"])

    def finish_delivery(self, endpoint_id: str, sk: str, token: str, status: str, fields: Mapping[str, Any]) -> bool:
        """Move a claimed delivery to ``status`` with ``fields`` (None removes one), only while the
        claim ``token`` holds it; False if it does not."""
        sets = {k: v for k, v in fields.items() if v is not None}
        removes = ["#tk", "lease_until", *(f"#r{i}" for i, k in enumerate(fields) if fields[k] is None)]
        names = {"#st": "status", "#tk": "token", **{f"#s{i}": k for i, k in enumerate(sets)},
                 **{f"#r{i}": k for i, k in enumerate(fields) if fields[k] is None}}
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"WHEP#{endpoint_id}"}, "sk": {"S": sk}},
                UpdateExpression="SET " + ", ".join(["#st = :to", *(f"#s{i} = :s{i}" for i in range(len(sets)))])
                                 + " REMOVE " + ", ".join(removes),
                ConditionExpression="#st = :fl AND #tk = :t", ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({":to": status, ":fl": "in_flight", ":t": token,
                                                   **{f":s{i}": v for i, v in enumerate(sets.values())}}))
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def list_deliveries(self, endpoint_id: str, limit: int, cursor: str | None
                        ) -> tuple[list[dict[str, Any]], str | None]:
        """The endpoint's deliveries, newest event first."""
        pk = f"WHEP#{endpoint_id}"
        kwargs: dict[str, Any] = {"TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :d)",
                                  "ExpressionAttributeValues": {":p": {"S": pk}, ":d": {"S": "DLV#"}},
                                  "Limit": limit, "ScanIndexForward": False}
        start = decode_cursor(cursor, {"pk": pk, "sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [from_item(i) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    # -- emitted events ----------------------------------------------------------------------------
    def get_outbox(self, outbox_id: str) -> dict[str, Any] | None:
        return self._get(f"OUTBOX#{outbox_id}", "OUTBOX")

    def put_event_outbox(self, outbox_id: str, at: str, event: Mapping[str, Any]) -> bool:
        """The outbox record of an emitted event, once per id; False if it was put already."""
        put = outbox_put(self._t, outbox_id, "event", [], at, **event)["Put"]
        try:
            self._c.put_item(**put, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True
