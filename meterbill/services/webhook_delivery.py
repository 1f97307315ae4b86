"""Delivering events to the outbound webhook endpoints (docs/integrations.md, "Outbound webhooks").

The webhooks queue takes two kinds of message; the webhooks dispatch function handles both:

1. an **event** — what the fan-out sends for an outbox record (an invoice's ``push``, ``void``,
   ``paid``, ``credit_note``, or an emitted ``event``): it becomes one delivery record per enabled
   endpoint subscribed to its type (a conditional put: a redelivered or re-driven event makes no
   second one) and one ``{"delivery": …}`` message per new record, on the same queue;
2. a **delivery**: claimed (``pending`` → ``in_flight``, conditional, with a lease), signed with
   every active secret of the endpoint and POSTed once (the plugin), then ``delivered`` (status
   code) or, classified by the plugin, ``failed`` for good (reason) or back to ``pending`` with
   :class:`RetryLater` — the message comes back after the receiver's ``Retry-After`` or a doubling
   delay (its visibility timeout, never a sleep); after ``MAX_ATTEMPTS`` it is ``failed``.

The ``webhook-id`` of a delivery is derived from the event and the endpoint, so every attempt, and
a re-driven event, carries the same id: receivers de-duplicate on it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from meterbill.domain.instants import iso
from meterbill.domain.webhooks import MAX_ATTEMPTS, body, event_id, message_id, retry_delay
from meterbill.integration.contract import Permanent, Retryable
from meterbill.ports import Clock
from meterbill.services.errors import Conflict, InvalidField
from meterbill.services.sync import ACTIONS, MAX_DELAY_S, MessageQueue, RetryLater
from meterbill.services.webhook_endpoints import active

log = logging.getLogger(__name__)

LEASE_S = 120             # one attempt: the POST's timeout and a margin (the function's timeout is less)


class WebhookDelivery:
    def __init__(self, store: Any, clock: Clock, plugin: Any, queue: MessageQueue) -> None:
        self._store = store
        self._clock = clock
        self._plugin = plugin          # () -> the built webhooks plugin (once per process)
        self._queue = queue

    def dispatch(self, message: Mapping[str, Any], receipt: str | None = None) -> str:
        """Handle one message of the webhooks queue: an event (``queued <n>``) or a delivery
        (``delivered``, ``failed``, ``done``); RetryLater (with ``receipt``: after making the
        message invisible that long) to come back."""
        try:
            if "delivery" in message:
                return self._deliver(message)
            return f"queued {self._expand(message)}"
        except RetryLater as later:
            if receipt is not None:
                self._queue.delay(receipt, int(min(max(later.after_s, 1), MAX_DELAY_S)))
            raise

    # -- an event → its deliveries -----------------------------------------------------------------
    def _event(self, message: Mapping[str, Any]) -> tuple[str, str, str, dict[str, Any]] | None:
        """(event id, type, when, data) of a queued event; None when its invoice is gone."""
        action = message.get("action")
        if action == "event":   # emitted: the event is its outbox record
            outbox = self._store.get_outbox(str(message["outbox"]))
            if outbox is None:
                log.error("webhooks: the outbox record %s is gone (kept 35 days)", message["outbox"])
                return None
            return (str(outbox["event_id"]), str(outbox["event_type"]), str(outbox["at"]),
                    dict(outbox.get("data") or {}))
        if action not in ACTIONS or not isinstance(message.get("invoice"), str):
            raise InvalidField("message", f"not a webhooks message: {dict(message)!r}"[:300])
        invoice = self._store.get_invoice(message["invoice"])
        note = self._store.get_credit_note(message["credit_note"]) if action == "credit_note" else None
        if invoice is None or (action == "credit_note" and note is None):
            log.error("webhooks: %s of invoice %s: the invoice or credit note does not exist", action, message["invoice"])
            return None
        described = self._plugin().event(action, invoice, note)
        if described is None:   # a partial payment, a dunning reminder: no webhook event type
            return None
        event_type, subject, when, data = described
        return event_id(event_type, subject), event_type, when, data

    def _expand(self, message: Mapping[str, Any]) -> int:
        found = self._event(message)
        if found is None:
            return 0
        evt, event_type, when, data = found
        text = body(evt, event_type, when, data)
        now = iso(self._clock())
        queued = []
        for endpoint in self._store.all_endpoints():
            if not endpoint.get("enabled") or event_type not in endpoint.get("event_types", ()):
                continue
            msg = message_id(evt, endpoint["id"])
            record = {"sk": f"DLV#{when}#{msg}", "id": msg, "endpoint_id": endpoint["id"], "event_id": evt,
                      "event_type": event_type, "event_at": when, "body": text, "status": "pending",
                      "attempts": 0, "created_at": now}
            if self._store.create_delivery(record):
                queued.append({"delivery": msg, "endpoint": endpoint["id"], "sk": record["sk"]})
            else:   # made by an earlier attempt of this message, whose queueing may have failed
                held = self._store.get_delivery(endpoint["id"], record["sk"]) or {}
                if held.get("status") in ("pending", "in_flight"):
                    queued.append({"delivery": msg, "endpoint": endpoint["id"], "sk": record["sk"]})
        if queued:
            self._queue.send(queued)
        return len(queued)

    # -- one delivery --------------------------------------------------------------------------------
    def _deliver(self, message: Mapping[str, Any]) -> str:
        endpoint_id, sk = str(message["endpoint"]), str(message["sk"])
        held = self._store.get_delivery(endpoint_id, sk)
        if held is None:
            log.error("webhooks: delivery %s of endpoint %s does not exist", message["delivery"], endpoint_id)
            return "failed"
        if held["status"] in ("delivered", "failed"):
            return "done"
        now = self._clock()
        token = uuid.uuid4().hex
        try:
            record = self._store.claim_delivery(endpoint_id, sk, token, iso(now), iso(now + timedelta(seconds=LEASE_S)))
        except Conflict:
            again = self._store.get_delivery(endpoint_id, sk) or {}
            if again.get("status") in ("delivered", "failed"):
                return "done"
            raise RetryLater(f"another attempt holds delivery {held['id']}", LEASE_S) from None
        attempts = int(record["attempts"])

        def finish(status: str, **fields: Any) -> None:
            if not self._store.finish_delivery(endpoint_id, sk, token, status, fields):
                log.warning("webhooks: the claim of delivery %s was lost before %s", record["id"], status)

        endpoint = self._store.get_endpoint(endpoint_id)
        if endpoint is None or not endpoint.get("enabled"):
            finish("failed", error="the endpoint was disabled before this delivery was made")
            return "failed"
        signing = [s["secret"] for s in active(self._store.get_endpoint_secrets(endpoint_id), iso(now))]
        plugin = self._plugin()
        try:
            status = plugin.deliver(endpoint["url"], signing, record["id"], now, record["body"])
        except Exception as exc:  # noqa: BLE001 - the plugin's classify decides what it means
            verdict = plugin.classify(exc)
            reason = verdict.reason
            code = getattr(exc, "status", None)
            if isinstance(verdict, Permanent) or attempts >= MAX_ATTEMPTS:
                reason = reason if isinstance(verdict, Permanent) else f"gave up after {attempts} attempts: {reason}"
                finish("failed", error=reason, status_code=code)
                log.error("webhook.failed: delivery %s (%s) to endpoint %s: %s", record["id"], record["event_type"],
                          endpoint_id, reason)
                return "failed"
            after = verdict.after_s if isinstance(verdict, Retryable) else None
            finish("pending", error=reason, status_code=code)
            raise RetryLater(reason, retry_delay(attempts, after)) from exc
        finish("delivered", status_code=status, error=None, delivered_at=iso(self._clock()))
        return "delivered"
