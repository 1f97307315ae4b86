"""Lambda entry point: scheduled close of every billing period that has ended."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = default_container().billing.run().as_dict()
    metrics.add_metric("InvoicesCreated", MetricUnit.Count, len(summary["invoices_created"]))
    if summary["errors"]:
        metrics.add_metric("CloseErrors", MetricUnit.Count, len(summary["errors"]))
        logger.error("some customers could not be closed", extra={"errors": summary["errors"]})
    return summary
