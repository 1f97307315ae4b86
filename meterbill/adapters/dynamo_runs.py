"""Billing table: billing runs and their per-customer outcomes (the fanned-out close, issue 9).

  RUN#<id> / RUN                  gsi1: RUNS / <started_at>#<id>   the run: as_of, status, counters,
                                  dispatch progress, the usage cutoff
  RUN#<id> / OUT#<kind>#<customer>  one task's outcome (closed | waiting | failed, reason, invoices);
                                  gsi1: RUN#<id>#<status> / <customer> while waiting or failed only

Counters stay exact under SQS's at-least-once delivery: an outcome's conditional put (or its
transition from the status it was read in) and the counter ``ADD`` are one ``TransactWriteItems``,
so a redelivered message that finds the same outcome changes nothing. The dispatcher's page cursor
and its ``queued`` ``ADD`` are one conditional update: a retried dispatch resumes where the last
recorded page ended and counts no page twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import decode_cursor, encode_cursor, from_item, to_item
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed

COUNTERS = ("queued", "closed", "waiting", "failed", "given_up")
LISTED = ("waiting", "failed")    # outcomes findable by status (closed ones are the many: not indexed)


def _run_key(run_id: str, sk: str = "RUN") -> dict[str, Any]:
    return {"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": sk}}


def _outcome_sk(kind: str, customer: str) -> str:
    return f"OUT#{kind}#{customer}"


def _condition_failed(exc: ClientError) -> bool:
    """A transaction cancelled because a condition did not hold (the outcome is already recorded),
    not because another transaction held the same item (TransactionConflict: transient)."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return conditional_failed(exc)
    reasons = exc.response.get("CancellationReasons") or []
    if reasons:
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return "ConditionalCheckFailed" in str(exc.response.get("Error", {}).get("Message", ""))


def _doc(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}


class RunItems(DynamoTable):
    def create_run(self, doc: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store a new run (counters at 0); if its id exists, the stored run and False."""
        item = {**doc, **{c: 0 for c in COUNTERS}, "pk": f"RUN#{doc['id']}", "sk": "RUN",
                "gsi1pk": "RUNS", "gsi1sk": f"{doc['started_at']}#{doc['id']}"}
        try:
            self._c.put_item(TableName=self._t, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            existing = self.get_run(str(doc["id"]))
            if existing is None:  # pragma: no cover - a run is never deleted
                raise
            return existing, False
        return _doc(item), True

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        found = self._get(f"RUN#{run_id}", "RUN")
        return None if found is None else _doc(found)

    def list_runs(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first."""
        kwargs: dict[str, Any] = {"TableName": self._t, "IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": "RUNS"}}, "Limit": limit,
                                  "ScanIndexForward": False}
        start = decode_cursor(cursor, {"pk": None, "sk": "RUN", "gsi1pk": "RUNS", "gsi1sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [_doc(from_item(i)) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))

    def set_run_fields(self, run_id: str, fields: Mapping[str, Any], expect_status: str) -> bool:
        """Set attributes of a run still in ``expect_status`` (False if it is not)."""
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":f{i}": v for i, v in enumerate(fields.values())}
        try:
            self._c.update_item(
                TableName=self._t, Key=_run_key(run_id),
                UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                ConditionExpression="#status = :expect",
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues=to_item({**values, ":expect": expect_status}))
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def advance_dispatch(self, run_id: str, expect: str, new: str, queued: int, status: str | None = None) -> bool:
        """Record a dispatched page: the cursor moves from ``expect`` to ``new`` and ``queued`` grows
        by the page's messages, in one conditional update (False: another dispatcher moved it)."""
        update = "SET #d = :new ADD queued :n"
        values: dict[str, Any] = {":new": new, ":old": expect, ":n": queued, ":dispatching": "dispatching"}
        if status is not None:
            update = "SET #d = :new, #status = :st ADD queued :n"
            values[":st"] = status
        try:
            self._c.update_item(
                TableName=self._t, Key=_run_key(run_id), UpdateExpression=update,
                ConditionExpression="#d = :old AND #status = :dispatching",
                ExpressionAttributeNames={"#d": "dispatch", "#status": "status"},
                ExpressionAttributeValues=to_item(values))
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def get_outcome(self, run_id: str, kind: str, customer: str) -> dict[str, Any] | None:
        found = self._get(f"RUN#{run_id}", _outcome_sk(kind, customer))
        return None if found is None else _doc(found)

    def record_outcome(self, run_id: str, outcome: Mapping[str, Any], previous: Mapping[str, Any] | None,
                       counts: Mapping[str, int]) -> bool:
        """Put ``outcome`` if the stored one is still ``previous`` (None: none yet) and add
        ``counts`` to the run's counters, in one transaction. False: it changed meanwhile (a
        redelivered or concurrent copy of the message recorded it first): nothing was written."""
        sk = _outcome_sk(str(outcome["kind"]), str(outcome["customer"]))
        item: dict[str, Any] = {**outcome, "pk": f"RUN#{run_id}", "sk": sk}
        if outcome["status"] in LISTED:
            item.update(gsi1pk=f"RUN#{run_id}#{outcome['status']}", gsi1sk=str(outcome["customer"]))
        put: dict[str, Any] = {"TableName": self._t, "Item": to_item(item)}
        if previous is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put.update(ConditionExpression="#s = :s AND attempts = :a", ExpressionAttributeNames={"#s": "status"},
                       ExpressionAttributeValues=to_item({":s": previous["status"], ":a": previous["attempts"]}))
        ops: list[dict[str, Any]] = [{"Put": put}]
        counts = {k: v for k, v in counts.items() if v}
        if counts:
            names = {f"#c{i}": k for i, k in enumerate(counts)}
            ops.append({"Update": {
                "TableName": self._t, "Key": _run_key(run_id), "ConditionExpression": "attribute_exists(pk)",
                "UpdateExpression": "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts))),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_item({f":c{i}": v for i, v in enumerate(counts.values())})}})
        try:
            self._c.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise   # TransactionConflict (another worker's transaction on the run item), throttling: retry
        return True

    def finish_run(self, run_id: str, counters: Mapping[str, int], finished_at: str) -> bool:
        """Mark the run finished if it is running and its counters are still ``counters``."""
        names = {f"#c{i}": k for i, k in enumerate(counters)}
        cond = " AND ".join(["#status = :running", *(f"#c{i} = :c{i}" for i in range(len(counters)))])
        values = {f":c{i}": v for i, v in enumerate(counters.values())}
        try:
            self._c.update_item(
                TableName=self._t, Key=_run_key(run_id), ConditionExpression=cond,
                UpdateExpression="SET #status = :finished, finished_at = :at",
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues=to_item({**values, ":running": "running", ":finished": "finished",
                                                   ":at": finished_at}))
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def run_outcomes(self, run_id: str, status: str | None, limit: int, cursor: str | None
                     ) -> tuple[list[dict[str, Any]], str | None]:
        """A run's outcomes: every one (by task), or the waiting / failed ones (by customer)."""
        if status is not None:
            if status not in LISTED:
                raise ValueError(f"outcomes are listed by status only for {LISTED}")
            items, nxt = self._query_index("gsi1", f"RUN#{run_id}#{status}", limit, cursor)
            return [_doc(i) for i in items], nxt
        kwargs: dict[str, Any] = {"TableName": self._t, "KeyConditionExpression": "pk = :p AND begins_with(sk, :o)",
                                  "ExpressionAttributeValues": {":p": {"S": f"RUN#{run_id}"}, ":o": {"S": "OUT#"}},
                                  "Limit": limit, "ConsistentRead": True}
        start = decode_cursor(cursor, {"pk": f"RUN#{run_id}", "sk": None})
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self._c.query(**kwargs)
        return [_doc(from_item(i)) for i in resp.get("Items", [])], encode_cursor(resp.get("LastEvaluatedKey"))
