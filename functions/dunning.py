"""Lambda entry point: the scheduled dunning tick (EventBridge Scheduler; docs/integrations.md,
"Payments, terms and dunning"). Marks open invoices past due ``overdue``, records and sends the
dunning ladder's steps (each step once: conditional writes), flags collections after the last.
A retried or overlapping invocation sends nothing twice; ``as_of`` is the tick's scheduled time
when the schedule passes it (``<aws.scheduler.scheduled-time>``), never later than now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()


def process(event: dict[str, Any], dunning: Any) -> dict[str, Any]:
    raw = (event or {}).get("scheduled_time")
    as_of = datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) and raw else None
    return dict(dunning.run(as_of))


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = process(event, default_container().dunning)
    metrics.add_metric("InvoicesOverdue", MetricUnit.Count, len(summary["overdue"]))
    metrics.add_metric("DunningReminders", MetricUnit.Count, len(summary["reminders"]))
    metrics.add_metric("InvoicesToCollections", MetricUnit.Count, len(summary["collections"]))
    return summary
