"""Lambda entry point: DynamoDB stream of raw events -> usage buckets, exactly once per batch.

Response contract is Lambda's ReportBatchItemFailures. The batch is applied as one unit, so on
any failure we report the batch's first record: Lambda retries the whole batch from there and
the per-bucket batch markers skip what was already applied (see services/aggregation.py).
Per-record processing (Powertools BatchProcessor) would cost one bucket write per event.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    try:
        outcome = default_container().aggregation.apply(records)
    except Exception:
        logger.exception("stream batch failed; asking Lambda to retry it whole",
                         extra={"first_sequence": records[0]["dynamodb"]["SequenceNumber"],
                                "records": len(records)})
        return {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    metrics.add_metric("EventsAggregated", MetricUnit.Count, outcome.events)
    metrics.add_metric("BucketsWritten", MetricUnit.Count, outcome.buckets_written)
    if outcome.invalid:
        metrics.add_metric("EventsNotAggregatable", MetricUnit.Count, outcome.invalid)
    if outcome.conflicts:
        metrics.add_metric("EventIdConflicts", MetricUnit.Count, outcome.conflicts)
    if outcome.dead_lettered:  # alarmed in template.yaml: usage kept aside needs a person
        metrics.add_metric("UsageDeadLettered", MetricUnit.Count, outcome.dead_lettered)
    logger.info("stream batch applied", extra={"outcome": outcome.as_dict()})
    return {"batchItemFailures": []}
