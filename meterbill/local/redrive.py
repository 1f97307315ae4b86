"""`meterbill redrive-stream`: re-apply stream batches that Lambda's aggregator mapping gave up on.

The mapping sends each such batch's shard range to its on-failure SQS queue (template.yaml,
``AggregatorDeadLetterQueue``). Within the stream's 24-hour retention, this reads each range back
from the stream and applies it through the same aggregation service, starting at the batch's first
record: the batch keeps its identity, so what the failed attempts applied is skipped by the usage
items' markers of the batch (exactly once; the shard's checkpoint has moved past the batch, so it is
not consulted, and the markers of a given-up batch are kept: services/aggregation.py). A message is deleted only after its range is applied in full."""

from __future__ import annotations

import json
import logging
from typing import Any

from meterbill.adapters.dynamo_stream import records_between
from meterbill.bootstrap import Container

log = logging.getLogger(__name__)


def batch_info(message_body: str) -> dict[str, Any]:
    """Lambda's on-failure record for a DynamoDB stream batch -> its ``DDBStreamBatchInfo``."""
    doc = json.loads(message_body)
    info = doc.get("DDBStreamBatchInfo")
    if not isinstance(info, dict) or not {"shardId", "startSequenceNumber", "endSequenceNumber",
                                          "streamArn"} <= set(info):
        raise ValueError("not a Lambda on-failure record of a DynamoDB stream batch (no DDBStreamBatchInfo)")
    return info


def redrive(container: Container, sqs: Any, streams: Any, queue_url: str, max_messages: int = 100) -> dict[str, int]:
    done = {"messages": 0, "records": 0, "failed": 0}
    while done["messages"] + done["failed"] < max_messages:
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                   VisibilityTimeout=300)
        messages = resp.get("Messages", [])
        if not messages:
            break
        for msg in messages:
            try:
                info = batch_info(msg["Body"])
                records = records_between(streams, info["streamArn"], info["shardId"],
                                          info["startSequenceNumber"], info["endSequenceNumber"])
                if not records or records[0]["dynamodb"]["SequenceNumber"] != info["startSequenceNumber"]:
                    raise RuntimeError("the batch's first record is no longer in the stream (over 24 h?)")
                outcome = container.aggregation.apply(records, redrive=True)
            except Exception:
                log.exception("could not re-drive message %s; it stays in the queue", msg.get("MessageId"))
                done["failed"] += 1
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
            done["messages"] += 1
            done["records"] += len(records)
            log.info("re-drove %s..%s: %s", info["startSequenceNumber"], info["endSequenceNumber"],
                     outcome.as_dict())
    return done
