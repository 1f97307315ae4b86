"""Lambda entry point: reconciliation (services/reconciliation.py).

Two callers: EventBridge Scheduler, daily, with its tick's time — the month before it is
reconciled (a sample of customers' raw events recounted); and the API's asynchronous invocation
``{"reconciliation": <id>}`` for a POST /v1/reconciliations request stored as ``queued``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    service = default_container().reconciliation
    requested = (event or {}).get("reconciliation")
    if isinstance(requested, str) and requested:
        report = service.run_requested(requested)
    else:
        raw = (event or {}).get("scheduled_time")
        report = service.scheduled(datetime.fromisoformat(raw.replace("Z", "+00:00"))
                                   if isinstance(raw, str) and raw else None)
    metrics.add_metric("ReconciliationDrift", MetricUnit.Count, int(report.get("drift", 0)))
    if not report.get("clean", True):
        logger.warning("reconciliation.drift", extra={"reconciliation": report["id"], "drift": report["drift"],
                                                      "by_kind": report["by_kind"]})
    return {"id": report["id"], "period": report["period"], "status": report["status"],
            "clean": bool(report.get("clean", False)), "drift": int(report.get("drift", 0))}
