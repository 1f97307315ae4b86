"""Lambda entry point: the scheduled billing run's dispatcher (EventBridge Scheduler).

The schedule passes its tick's time (``<aws.scheduler.scheduled-time>``): the run's id, so a
retried invocation resumes the same run instead of starting a second one."""

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
    scheduled = scheduled_time(event)
    run = default_container().billing_runs.scheduled(
        scheduled, time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric("CustomersQueued", MetricUnit.Count, run["queued"])
    return run
