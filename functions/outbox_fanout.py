"""Lambda entry point: the billing table's stream, filtered to outbox records (template.yaml
``FilterCriteria``: records whose ``pk`` begins with ``OUTBOX#``; INSERTs are picked here) -> one message per invoice on
each enabled integration's sync queue (docs/integrations.md, "Delivery").

Partial batch failures (Powertools BatchProcessor, DynamoDB stream records): a record whose send
failed is retried from there; the ones before it are not sent again. A record sent twice (a retried
batch) makes duplicate messages, which the dispatcher's sync-record claim turns into no-ops. The
local stack's stream poller calls this same handler (meterbill/local/stack.py)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from meterbill.bootstrap import default_container, lambda_logger, partial_batch

logger = lambda_logger()
metrics = Metrics()


def process(event: dict[str, Any], context: Any, sync: Any) -> dict[str, Any]:
    def record_handler(record: DynamoDBRecord) -> int:
        if record.raw_event.get("eventName") != "INSERT":
            return 0
        image = record.dynamodb.new_image if record.dynamodb else None
        if not image or not str(image.get("pk", "")).startswith("OUTBOX#"):
            return 0   # the filter lets only outbox inserts through; anything else is not ours
        return int(sync.fan_out(image))

    return partial_batch(event, context, record_handler, stream=True)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context, default_container().sync)
