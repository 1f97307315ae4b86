"""The close queue (SQS): the billing run's dispatcher sends one message per customer task, the
close worker (functions/close_worker.py) consumes them with partial batch failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meterbill.adapters.dynamo_table import ThrottledError

BATCH = 10            # SendMessageBatch's limit
MAX_ATTEMPTS = 8


class SqsWorkQueue:
    def __init__(self, client: Any, url: str, sleep: Callable[[float], None] = time.sleep,
                 env_name: str = "METERBILL_CLOSE_QUEUE_URL") -> None:
        self._c = client
        self._url = url
        self._sleep = sleep
        self._env_name = env_name

    def send(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Every message, 10 per ``SendMessageBatch``; entries SQS could not take are sent again
        (with backoff). Raises once entries are still refused after MAX_ATTEMPTS: the caller has
        recorded nothing for them, so its retry sends them again."""
        if messages and not self._url:
            raise RuntimeError(f"no queue configured: set {self._env_name}")
        for i in range(0, len(messages), BATCH):
            entries = [{"Id": str(n), "MessageBody": json.dumps(m, separators=(",", ":"))}
                       for n, m in enumerate(messages[i:i + BATCH])]
            for attempt in range(MAX_ATTEMPTS):
                failed = self._c.send_message_batch(QueueUrl=self._url, Entries=entries).get("Failed", [])
                if not failed:
                    break
                if any(f.get("SenderFault") for f in failed):
                    raise ValueError(f"SQS refused messages: {failed}")
                ids = {f["Id"] for f in failed}
                entries = [e for e in entries if e["Id"] in ids]
                self._sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise ThrottledError(f"SQS kept failing {len(entries)} messages; retry later")

    def delay(self, receipt: str, seconds: int) -> None:
        """Make a received message visible again only after ``seconds`` (a retry later)."""
        self._c.change_message_visibility(QueueUrl=self._url, ReceiptHandle=receipt, VisibilityTimeout=int(seconds))
