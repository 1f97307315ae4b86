"""Billing table: reconciliation runs and their findings (services/reconciliation.py).

  RECON#<id> / RECON        the run: period, scope, status, summary, the recount's cost
  RECON#<id> / F#<000001>   one finding each, in the order found (paged by a Query)

A finding is written once under its own number (BatchWriteItem, unprocessed items retried), so a
re-run of the same id rewrites the same keys instead of adding copies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.adapters.dynamo_table import MAX_ATTEMPTS, DynamoTable, ThrottledError

BATCH_WRITE = 25


class ReconciliationItems(DynamoTable):
    def put_reconciliation(self, doc: Mapping[str, Any]) -> None:
        self._put({**doc, "pk": f"RECON#{doc['id']}", "sk": "RECON"})

    def get_reconciliation(self, recon_id: str) -> dict[str, Any] | None:
        found = self._get(f"RECON#{recon_id}", "RECON")
        return None if found is None else {k: v for k, v in found.items() if k not in ("pk", "sk")}

    def put_findings(self, recon_id: str, findings: Sequence[Mapping[str, Any]]) -> None:
        items = [{"PutRequest": {"Item": to_item({**f, "pk": f"RECON#{recon_id}", "sk": f"F#{i:06d}"})}}
                 for i, f in enumerate(findings, 1)]
        for i in range(0, len(items), BATCH_WRITE):
            request = {self._t: items[i:i + BATCH_WRITE]}
            for attempt in range(MAX_ATTEMPTS):
                request = self._c.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise ThrottledError("DynamoDB kept returning unprocessed items; retry later")

    def findings(self, recon_id: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        pk = f"RECON#{recon_id}"
        kwargs: dict[str, Any] = {"TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :f)",
                                  "ExpressionAttributeValues": {":p": {"S": pk}, ":f": {"S": "F#"}}, "Limit": limit}
        start = decode_cursor(cursor, {"pk": pk, "sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return ([{k: v for k, v in from_item(i).items() if k not in ("pk", "sk")} for i in resp.get("Items", [])],
                encode_cursor(resp.get("LastEvaluatedKey")))
