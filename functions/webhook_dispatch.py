"""Lambda entry point: the webhooks queue -> one signed delivery per (event, endpoint)
(docs/integrations.md, "Outbound webhooks").

Partial batch failures (Powertools BatchProcessor): a delivery to retry (5xx, 408, 429, no answer)
has had its visibility timeout set by the service (the receiver's Retry-After, else a doubling
delay) and is reported failed, so SQS delivers just it again, later; the queue's
``MaximumConcurrency`` bounds the load on receivers. The local stack's webhooks worker calls this
same handler."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from meterbill.bootstrap import default_container, lambda_logger, partial_batch

logger = lambda_logger()
metrics = Metrics()


def process(event: dict[str, Any], context: Any, delivery: Any) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> str:
        return str(delivery.dispatch(json.loads(record.body), receipt=record.receipt_handle))

    return partial_batch(event, context, record_handler)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context, default_container().hook_delivery)
