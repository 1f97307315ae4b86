"""Lambda entry point: the scheduled anomaly scan (EventBridge Scheduler, hourly).

Scans the last complete hours of every customer's stored usage (never the raw events) and sends
the alerts of new anomalies; the schedule's tick time names the hours, so a retried delivery
scans the same ones (idempotent: nothing is stored or alerted twice)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.bootstrap import default_container, lambda_logger, scheduled_time

logger = lambda_logger()
metrics = Metrics()


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The scan's counts (the anomalies themselves: GET /v1/anomalies)."""
    result = default_container().anomalies.scheduled(scheduled_time(event),
                                                     lambda: context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric("AnomaliesCreated", MetricUnit.Count, result["created"])
    metrics.add_metric("AnomalyAlertsFailed", MetricUnit.Count, result["alerts_failed"])
    counts = {k: v for k, v in result.items() if k != "anomalies"}
    logger.info("anomaly scan", extra={"scan": counts})   # nested: "created" is a LogRecord attribute
    return counts
