"""Lambda entry point: the close queue (SQS) -> one customer task of a billing run per message.

Powertools' batch utility reports the messages that failed (a transient error, or a customer
waiting for usage, which the service has put back with a delay) as ``batchItemFailures``: SQS
delivers just those again; the others are deleted. After each batch the invoice-number sequencer
numbers what the batch committed (docs/decisions.md, "Invoice numbers at scale"). The local stack's queue workers call this
same handler with the same events (meterbill/local/stack.py ``QueueWorker``)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()


def process(event: dict[str, Any], context: Any, runs: Any) -> dict[str, Any]:
    """One batch through ``runs`` (a BillingRunService); a processor per call: the local stack
    runs several workers in one process. A batch whose every record failed is reported as such
    (not raised): the same redelivery, without an invocation error."""
    def record_handler(record: SQSRecord) -> str:
        return str(runs.handle(json.loads(record.body), receipt=record.receipt_handle,
                               receive_count=int(record.attributes.approximate_receive_count or 1),
                               time_left=lambda: context.get_remaining_time_in_millis() / 1000))

    response = process_partial_response(event=event, record_handler=record_handler,
                                        processor=BatchProcessor(event_type=EventType.SQS,
                                                                 raise_on_entire_batch_failure=False),
                                        context=context)
    runs.number_invoices()  # the sequencer: what this batch committed gets its gapless numbers
    return response


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, context, default_container().billing_runs)
