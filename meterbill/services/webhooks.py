"""Payments flowing back: a vendor's signed webhook applied to meterbill's invoice, forward only.

The plugin verifies the signature on the exact raw body (``parse_webhook``; bad → InvalidWebhook →
400, nothing changes) and maps the event to a ``PaymentEvent`` naming meterbill's invoice (the
vendor object's ``meterbill_invoice_id``) or ``Ignored`` (2xx). An event id already applied does
nothing. The status moves only forward (``payments.advance``): paid stays paid whatever arrives
after, in whatever order. ``paid`` / ``void`` / ``uncollectible`` are meterbill's own transitions
(``set_invoice_status``, conditional; paid and void write an outbox record in the same
transaction, so the payment reaches the other integrations through ``record_payment``); the other
statuses are kept as ``payment_status``. The event is recorded after it is applied: a crash between
the two makes the vendor's retry apply it again, which the forward-only rule makes harmless.
A collected ``paid`` becomes a payment record of the remaining balance (``PaymentService.settle``;
its id derives from the vendor's invoice id, so a second delivery is the same payment).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from meterbill.domain.instants import iso
from meterbill.integration import payments
from meterbill.integration.contract import Ignored, PaymentSource
from meterbill.integration.errors import InvalidWebhook
from meterbill.ports import Clock
from meterbill.services.errors import Conflict, InvalidField, NotFound

log = logging.getLogger(__name__)
SEEN_TTL = timedelta(days=40)     # vendors retry for days (Stripe: 3); kept longer than that
# meterbill's invoice status -> the payment status it stands for
AS_PAYMENT = {"final": "open", "paid": "paid", "void": "void", "uncollectible": "uncollectible"}
# payment statuses meterbill records as its own invoice transitions (allowed from)
TRANSITION = {"paid": ("final", "uncollectible"), "void": ("final", "uncollectible"), "uncollectible": ("final",)}


class WebhookService:
    def __init__(self, store: Any, clock: Clock, integrations: tuple[str, ...], plugin: Callable[[str], Any],
                 payments: Any = None) -> None:
        self._payments = payments    # PaymentService: a collected invoice's balance becomes a payment record
        self._store = store
        self._clock = clock
        self._integrations = integrations
        self._plugin = plugin

    def receive(self, integration: str, raw_body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        if integration not in self._integrations:
            raise NotFound(f"no webhook endpoint for {integration!r} here", field="integration")
        plugin = self._plugin(integration)
        if not isinstance(plugin, PaymentSource):
            raise NotFound(f"{integration} sends no payment webhooks", field="integration")
        try:
            event = plugin.parse_webhook(raw_body, headers)
        except InvalidWebhook as exc:
            raise InvalidField("signature", str(exc)) from None
        if isinstance(event, Ignored):
            return {"received": True, "ignored": event.reason}
        if self._store.webhook_seen(integration, event.event_id):
            return {"received": True, "duplicate": True}
        outcome = self._apply(integration, event)
        now = self._clock()
        self._store.remember_webhook(integration, event.event_id, {
            "type": event.type, "invoice_id": event.meterbill_invoice_id, "outcome": outcome,
            "received_at": iso(now), "expires_at": int((now + SEEN_TTL).timestamp())})
        return {"received": True, "outcome": outcome}

    def _apply(self, integration: str, event: Any) -> str:
        invoice = self._store.get_invoice(event.meterbill_invoice_id)
        if invoice is None or invoice.get("status") not in AS_PAYMENT:
            log.warning("%s webhook %s names invoice %s, which is not a final invoice here", integration,
                        event.event_id, event.meterbill_invoice_id)
            return "unknown_invoice"
        if event.status is None:   # refund, dispute, finalization failed: flagged for a person
            log.warning("%s webhook %s on invoice %s: %s %s", integration, event.event_id, invoice["id"],
                        event.flag, event.detail or "")
            return f"flagged:{event.flag}"
        current = invoice.get("payment_status") or AS_PAYMENT[invoice["status"]]
        if AS_PAYMENT[invoice["status"]] in payments.TERMINAL:
            current = AS_PAYMENT[invoice["status"]]
        new = payments.advance(current, event.status)
        if new == current:
            return "unchanged"
        at = iso(self._clock())
        if new == "paid" and self._payments is not None:
            # the balance Stripe collected becomes a payment record (one truth for the balance): the
            # same transaction makes the invoice paid and queues the payment to the other integrations
            if self._payments.settle(invoice["id"], integration, event.external_id or event.event_id,
                                     event.occurred_at or at) is not None:
                return new
        if new in TRANSITION:
            changes = {f"{new}_at": event.occurred_at or at, f"{new}_reference": event.external_id or event.event_id,
                       f"{new}_source": integration, "payment_status": new}
            try:
                self._store.set_invoice_status(invoice["id"], TRANSITION[new], new, changes,
                                               outbox_at=at if new in ("paid", "void") else None)
            except Conflict:
                return "unchanged"   # moved meanwhile (e.g. paid by hand): forward-only keeps it
        else:
            self._store.set_payment_status(invoice["id"], new, at)
        return new
