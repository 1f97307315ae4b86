"""Lambda entry point: one integration's sync queue -> its plugin (docs/integrations.md).

One handler for every integration: ``METERBILL_INTEGRATION`` (template.yaml, per function) names
the one this function serves. Partial batch failures (Powertools BatchProcessor): a message to
retry (Retryable, Unknown, an invoice not pushed yet) has had its visibility timeout set by the
service (``after_s``, e.g. Stripe's Retry-After) and is reported failed, so SQS delivers just it
again, later; a rate limit is the queue's ``MaximumConcurrency``, never a sleep. The local stack's
queue workers call this same handler."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from meterbill.bootstrap import default_container, lambda_logger, partial_batch

logger = lambda_logger()
metrics = Metrics()


def process(event: dict[str, Any], context: Any, sync: Any, integration: str) -> dict[str, Any]:
    def record_handler(record: SQSRecord) -> str:
        return str(sync.dispatch(integration, json.loads(record.body), receipt=record.receipt_handle))

    return partial_batch(event, context, record_handler)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context, default_container().sync, os.environ["METERBILL_INTEGRATION"])
