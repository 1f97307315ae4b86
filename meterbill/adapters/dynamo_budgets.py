"""Billing table: spend budgets, running bills and budget alerts (``ports.BudgetStore``).

  CUS#<id> / BUDGET                         amount, currency, thresholds, set_by, updated_at
  CUS#<id> / RUNNING                        the open period's running bill: period, spent, currency,
                                            computed_ms (a refresh never overwrites a later one)
  CUS#<id> / BALERT#<period start>#<pct:04d> one alert of one threshold in one period: claimed by a
                                            conditional put (attribute_not_exists), then ``sent``

Its own class over the same table (not a mixin of ``DynamoBillingStore``): the composition root
builds it with the same client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from meterbill.adapters.dynamo_codec import to_item
from meterbill.adapters.dynamo_table import DynamoTable, conditional_failed
from meterbill.services.errors import Conflict

_HIDDEN = ("pk", "sk")


def _doc(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: v for k, v in item.items() if k not in _HIDDEN}


def _alert_sk(period_start: str, threshold: int) -> str:
    return f"BALERT#{period_start}#{threshold:04d}"


class DynamoBudgetStore(DynamoTable):
    def get_budget_and_running(self, customer_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Both items in one BatchGetItem (strongly consistent): the spend check's one read."""
        found = {i["sk"]: i for i in self._batch_get([(f"CUS#{customer_id}", "BUDGET"),
                                                      (f"CUS#{customer_id}", "RUNNING")])}
        return _doc(found.get("BUDGET")), _doc(found.get("RUNNING"))

    def put_budget(self, customer_id: str, doc: Mapping[str, Any]) -> None:
        self._put({**doc, "pk": f"CUS#{customer_id}", "sk": "BUDGET"})

    def budgeted(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """customer -> budget, for those of ``customer_ids`` that have one."""
        items = self._batch_get([(f"CUS#{c}", "BUDGET") for c in sorted(set(customer_ids))])
        return {str(i["pk"])[len("CUS#"):]: _doc(i) or {} for i in items}

    def put_running(self, customer_id: str, doc: Mapping[str, Any]) -> bool:
        """Store a running bill unless a refresh that started later already stored one."""
        try:
            self._put({**doc, "pk": f"CUS#{customer_id}", "sk": "RUNNING"},
                      "attribute_not_exists(pk) OR computed_ms <= :c", {":c": doc["computed_ms"]})
        except Conflict:
            return False
        return True

    def alerts(self, customer_id: str, period_start: str) -> list[dict[str, Any]]:
        return [d for d in (_doc(i) for i in self._query_all({
            "TableName": self._t, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": {"S": f"CUS#{customer_id}"},
                                          ":s": {"S": f"BALERT#{period_start}#"}}})) if d is not None]

    def claim_alert(self, customer_id: str, period_start: str, threshold: int, doc: Mapping[str, Any]) -> bool:
        try:
            self._put({**doc, "pk": f"CUS#{customer_id}", "sk": _alert_sk(period_start, threshold)},
                      "attribute_not_exists(pk)")
        except Conflict:
            return False
        return True

    def settle_alert(self, customer_id: str, period_start: str, threshold: int, fields: Mapping[str, Any]) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        try:
            self._c.update_item(
                TableName=self._t, Key={"pk": {"S": f"CUS#{customer_id}"}, "sk": {"S": _alert_sk(period_start,
                                                                                                 threshold)}},
                ConditionExpression="attribute_exists(pk)",
                UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({f":f{i}": v for i, v in enumerate(fields.values())}))
        except ClientError as exc:
            if not conditional_failed(exc):
                raise


class LogAlertSink:
    """The alert seam until outbound webhooks are wired: one structured log line per alert
    (``budget.threshold_crossed``), which a metric filter can count."""

    def __init__(self, logger: Any = None) -> None:
        import logging

        self._log = logger or logging.getLogger("meterbill.alerts")

    def emit(self, event_type: str, payload: Mapping[str, Any], dedupe_key: str) -> None:
        self._log.warning("%s", event_type, extra={"alert": event_type, "dedupe_key": dedupe_key,
                                                   "payload": dict(payload)})
