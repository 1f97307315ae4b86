"""Billing table: detected usage anomalies (issue 11) and their alerts waiting to go out.

  ANOM#<customer> / <window start s:012d>#<meter>#<kind>   one anomaly, keyed by what identifies it
      gsi1: ANOMALIES / <window start ISO>#<customer>#<meter>#<kind>   every anomaly, by window start
      gsi2: ANOMALERT / <detected_at>#<customer>#<sk>   only while its alert has not gone out (sparse)

A re-scan finds an anomaly under the same key: the conditional put creates it once (and only
then is an alert due); a later scan that saw the window grow moves its end forward only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed

KEYS = ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
GROWN = ("end", "end_s", "expected", "expected_low", "expected_high", "observed", "score", "updated_at")


def anomaly_sk(start_s: int, meter: str, kind: str) -> str:
    return f"{start_s:012d}#{meter}#{kind}"


def _doc(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in KEYS}


class AnomalyItems(DynamoTable):
    def put_anomaly(self, doc: Mapping[str, Any], alert_due: bool) -> str:
        """Store an anomaly: ``created`` (first time: its alert is due if ``alert_due``), ``extended``
        (stored before with an earlier end) or ``unchanged``."""
        sk = anomaly_sk(int(doc["start_s"]), doc["meter"], doc["kind"])
        item = {**doc, "pk": f"ANOM#{doc['customer']}", "sk": sk, "gsi1pk": "ANOMALIES",
                "gsi1sk": f"{doc['start']}#{doc['customer']}#{doc['meter']}#{doc['kind']}",
                "alert": "pending" if alert_due else "none"}
        if alert_due:
            item.update(gsi2pk="ANOMALERT", gsi2sk=f"{doc['detected_at']}#{doc['customer']}#{sk}")
        try:
            self._c.put_item(TableName=self._t, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
            return "created"
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
        names = {f"#g{i}": k for i, k in enumerate(GROWN)}
        values = {f":g{i}": doc[k] for i, k in enumerate(GROWN)}
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": item["pk"]}, "sk": {"S": sk}},
                UpdateExpression="SET " + ", ".join(f"#g{i} = :g{i}" for i in range(len(GROWN))),
                ConditionExpression="#g1 < :g1", ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values))
            return "extended"
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            return "unchanged"

    def anomalies_of(self, customer_id: str, since_s: int) -> list[dict[str, Any]]:
        """A customer's anomalies whose window starts at or after ``since_s``, oldest first."""
        return [_doc(i) for i in self._query_all({
            "TableName": self._t, "KeyConditionExpression": "pk = :p AND sk >= :s",
            "ExpressionAttributeValues": {":p": {"S": f"ANOM#{customer_id}"}, ":s": {"S": f"{since_s:012d}"}}})]

    def list_anomalies(self, customer: str | None, meter: str | None, kind: str | None, since_s: int,
                       since_iso: str, limit: int, cursor: str | None
                       ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest window first: one customer's (its partition) or everyone's (gsi1)."""
        if customer is not None:
            kwargs: dict[str, Any] = {
                "TableName": self._t, "KeyConditionExpression": "pk = :p AND sk >= :s",
                "ExpressionAttributeValues": {":p": {"S": f"ANOM#{customer}"}, ":s": {"S": f"{since_s:012d}"}}}
            expect: dict[str, str | None] = {"pk": f"ANOM#{customer}", "sk": None}
        else:
            kwargs = {"TableName": self._t, "IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :p AND gsi1sk >= :s",
                      "ExpressionAttributeValues": {":p": {"S": "ANOMALIES"}, ":s": {"S": since_iso}}}
            expect = {"pk": None, "sk": None, "gsi1pk": "ANOMALIES", "gsi1sk": None}
        filters = {name: value for name, value in (("meter", meter), ("kind", kind)) if value is not None}
        if filters:
            kwargs["FilterExpression"] = " AND ".join(f"#f{i} = :f{i}" for i in range(len(filters)))
            kwargs["ExpressionAttributeNames"] = {f"#f{i}": k for i, k in enumerate(filters)}
            kwargs["ExpressionAttributeValues"].update({f":f{i}": {"S": v} for i, v in enumerate(filters.values())})
        kwargs.update(Limit=limit, ScanIndexForward=False)
        start = decode_cursor(cursor, expect)
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [_doc(from_item(i)) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    def pending_alerts(self, limit: int) -> list[dict[str, Any]]:
        """Anomalies whose alert has not gone out yet (oldest first)."""
        rows, _ = self._query_index("gsi2", "ANOMALERT", limit, None)
        return [_doc(r) for r in rows]

    def alert_sent(self, customer_id: str, start_s: int, meter: str, kind: str, at_iso: str) -> None:
        """Mark an anomaly's alert as gone out (and off the pending list); a second call changes nothing."""
        try:
            self._c.update_item(
                TableName=self._t,
                Key={"pk": {"S": f"ANOM#{customer_id}"}, "sk": {"S": anomaly_sk(start_s, meter, kind)}},
                UpdateExpression="SET #a = :sent, alerted_at = :at REMOVE gsi2pk, gsi2sk",
                ConditionExpression="#a = :pending", ExpressionAttributeNames={"#a": "alert"},
                ExpressionAttributeValues={":sent": {"S": "sent"}, ":pending": {"S": "pending"}, ":at": {"S": at_iso}})
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
