"""Delivering invoices to the integrations exactly once (docs/integrations.md, "Delivery").

Outbox → fan-out → one queue per integration → dispatch. Each transition that concerns the
integrations (numbered: ``push``; ``void``; ``paid``; ``credit_note``) wrote an outbox record in
its own transaction; ``fan_out`` turns one record into one message per invoice for every enabled
integration's queue; ``dispatch`` handles one message for one integration:

- the sync record of (invoice, integration, action) is *claimed* by a conditional write (a
  redelivered or concurrent message finds it held or done and does nothing twice);
- ``push``: ``validate_invoice`` (problems → ``failed``, no vendor call), ``upsert_customer`` (its
  ref remembered on the customer), ``find_invoice`` before ``push_invoice`` on every attempt (a
  list, cheap: after a long outage or a DLQ redrive the vendor's idempotency keys may be gone),
  ``synced`` with the external id, number and URL (a collecting integration's URL becomes the
  invoice's ``payment_url``);
- ``void`` / ``paid`` / ``credit_note``: need the push ``synced`` (its ref); they wait for it;
- any exception goes through the plugin's ``classify``: ``Retryable`` → back to ``pending`` and
  :class:`RetryLater` (the queue redelivers after ``after_s``), ``Permanent`` → ``failed`` + a
  ``sync.failed`` log line (the alarm's metric filter), ``Unknown`` → ``unknown`` and retried.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from meterbill.domain.instants import iso
from meterbill.domain.webhooks import event_record
from meterbill.integration.contract import ExternalRef, Notifier, Permanent, PaymentSource, Retryable
from meterbill.integration.keys import idempotency_key
from meterbill.ports import Clock
from meterbill.services.errors import Conflict, InvalidField, NotFound

log = logging.getLogger(__name__)

LEASE_S = 900             # an attempt holds a record this long (the dispatch function's timeout is less)
RETRY_S = 60              # default redelivery delay: Unknown, or a Retryable without Retry-After
WAIT_FOR_PUSH_S = 120     # a void/payment/credit note whose invoice is not pushed yet
ACTIONS = ("push", "void", "paid", "credit_note", "payment", "overdue", "reminder")
EVENT_SINK = "webhooks"   # the integration that takes emitted events (outbox action "event")
NOTICES = ("overdue", "reminder")   # delivered only by integrations that implement ``Notifier``
EXTRAS = ("credit_note", "payment", "step")   # what an outbox record adds to its messages
SHOWN = ("status", "external_id", "number", "url", "error", "attempts", "updated_at")


class RetryLater(Exception):
    """The message must come back after ``after_s`` seconds (the dispatch function sets its
    visibility timeout and reports it as a batch item failure)."""

    def __init__(self, reason: str, after_s: float) -> None:
        super().__init__(reason)
        self.after_s = after_s


MAX_DELAY_S = 43_200      # SQS's longest visibility timeout


class MessageQueue(Protocol):
    def send(self, messages: Sequence[Mapping[str, Any]]) -> None: ...
    def delay(self, receipt: str, seconds: int) -> None: ...


class SyncService:
    def __init__(self, store: Any, clock: Clock, integrations: Sequence[str],
                 plugin: Callable[[str], Any], queues: Mapping[str, MessageQueue]) -> None:
        self._store = store
        self._clock = clock
        self._integrations = tuple(integrations)
        self._plugin = plugin
        self._queues = queues

    # -- fan-out ---------------------------------------------------------------------------------
    def fan_out(self, outbox: Mapping[str, Any]) -> int:
        """One outbox record → one message per invoice on every enabled integration's queue.
        At-least-once (a stream batch may be delivered twice): the dispatcher's claim makes a
        duplicate message do nothing. Returns the messages sent."""
        action = outbox["action"]
        if action == "event":   # an emitted event (webhook_endpoints.emit, a sync.failed): webhooks only
            if EVENT_SINK not in self._integrations:
                return 0
            self._queues[EVENT_SINK].send([{"outbox": outbox["id"], "action": "event"}])
            return 1
        if action not in ACTIONS:
            raise InvalidField("action", f"unknown outbox action {action!r}")
        messages = [{"outbox": outbox["id"], "action": action, "invoice": inv, **_extras(outbox)}
                    for inv in outbox["invoices"]]
        for name in self._integrations:
            self._queues[name].send(messages)
        return len(messages) * len(self._integrations)

    # -- dispatch --------------------------------------------------------------------------------
    def dispatch(self, integration: str, message: Mapping[str, Any], receipt: str | None = None) -> str:
        """Handle one queued message for ``integration``. Returns what happened (``synced``,
        ``failed``, ``done`` for a record already settled); raises RetryLater to come back — with
        ``receipt``, after making the message invisible for that long (never a sleep)."""
        try:
            return self._dispatch(integration, message)
        except RetryLater as later:
            if receipt is not None:
                self._queues[integration].delay(receipt, int(min(max(later.after_s, 1), MAX_DELAY_S)))
            raise

    def _dispatch(self, integration: str, message: Mapping[str, Any]) -> str:
        action, invoice_id = message.get("action"), message.get("invoice")
        if action not in ACTIONS or not isinstance(invoice_id, str):
            raise InvalidField("message", f"not a sync message: {dict(message)!r}")
        action_key = "" if action == "push" else str(message["outbox"])
        invoice = self._store.get_invoice(invoice_id)
        if invoice is None:
            log.error("sync.failed: invoice %s does not exist (%s)", invoice_id, integration)
            return "failed"
        now = self._clock()
        token = uuid.uuid4().hex
        record = {"invoice_id": invoice_id, "integration": integration, "action": action,
                  "outbox": message.get("outbox"), **_extras(message)}
        if action in NOTICES and not isinstance(self._plugin(integration), Notifier):
            return "skipped"   # this integration puts no notices in front of people (e.g. Xero)
        existing = self._store.get_sync(invoice_id, integration, action_key)
        if existing and existing["status"] in ("synced", "failed"):
            return "done"
        try:
            self._store.claim_sync(invoice_id, integration, action_key, record, token, iso(now),
                                   iso(now + timedelta(seconds=LEASE_S)))
        except Conflict:
            held = self._store.get_sync(invoice_id, integration, action_key) or {}
            if held.get("status") in ("synced", "failed"):
                return "done"
            raise RetryLater(f"{integration}: another attempt holds invoice {invoice_id}", LEASE_S) from None

        def finish(status: str, **fields: Any) -> None:
            # a sync that fails for good is a sync.failed event (outbound webhooks), written with it
            event = event_record("sync.failed", f"{invoice_id}#{integration}#{action_key}#{token}", {
                "invoice_id": invoice_id, "integration": integration, "action": action,
                "reason": fields.get("error"), "failed_at": iso(self._clock())}) if status == "failed" else None
            if not self._store.finish_sync(invoice_id, integration, action_key, token, status, fields,
                                           iso(self._clock()), event=event):
                log.warning("sync of %s to %s: the claim was lost before %s", invoice_id, integration, status)

        plugin = self._plugin(integration)
        try:
            if action == "push":
                ref = self._push(plugin, integration, invoice)
            else:
                ref = self._follow_up(plugin, integration, invoice, action, message)
        except _Failed as failed:
            finish("failed", error=failed.reason)
            log.error("sync.failed: invoice %s %s to %s: %s", invoice_id, action, integration, failed.reason)
            return "failed"
        except RetryLater as later:
            finish("pending", error=str(later))
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's classify decides what it means
            verdict = plugin.classify(exc)
            if isinstance(verdict, Permanent):
                finish("failed", error=verdict.reason)
                log.error("sync.failed: invoice %s %s to %s: %s", invoice_id, action, integration, verdict.reason)
                return "failed"
            if isinstance(verdict, Retryable):
                finish("pending", error=verdict.reason)
                raise RetryLater(verdict.reason, verdict.after_s or RETRY_S) from exc
            finish("unknown", error=verdict.reason)
            raise RetryLater(verdict.reason, RETRY_S) from exc
        finish("synced", external_id=ref.id or None, number=ref.number, url=ref.url, error=None)
        if action == "push" and ref.url and isinstance(plugin, PaymentSource):
            self._store.set_payment_url(invoice_id, ref.url)
        return "synced"

    def _push(self, plugin: Any, integration: str, invoice: Mapping[str, Any]) -> ExternalRef:
        problems = plugin.validate_invoice(invoice)
        if problems:
            raise _Failed("; ".join(str(p) for p in problems))
        customer_ref = self._customer_ref(plugin, integration, invoice["customer_id"])
        found = plugin.find_invoice(invoice, customer_ref)
        if found is not None:
            return found  # pushed by an earlier attempt whose answer was lost
        return plugin.push_invoice(invoice, customer_ref, idempotency_key(integration, invoice["id"], "push"))

    def _customer_ref(self, plugin: Any, integration: str, customer_id: str) -> ExternalRef:
        customer = self._store.get_customer(customer_id)
        if customer is None:
            raise _Failed(f"customer {customer_id} does not exist")
        known = self._store.get_customer_ref(customer_id, integration)
        if known:
            customer = {**customer, "integrations": {integration: {"id": known["id"]}}}
        ref = plugin.upsert_customer(customer)
        if not known or known.get("id") != ref.id:
            self._store.put_customer_ref(customer_id, integration, {"id": ref.id, "number": ref.number, "url": ref.url})
        return ExternalRef(ref.id, ref.number, ref.url)

    def _follow_up(self, plugin: Any, integration: str, invoice: Mapping[str, Any], action: str,
                   message: Mapping[str, Any]) -> ExternalRef:
        pushed = self._store.get_sync(invoice["id"], integration, "") or {}
        if pushed.get("status") == "failed":
            raise _Failed("the invoice itself never reached this integration (its push failed)")
        if pushed.get("status") != "synced":
            raise RetryLater(f"invoice {invoice['id']} is not pushed to {integration} yet", WAIT_FOR_PUSH_S)
        ref = ExternalRef(pushed["external_id"], pushed.get("number"), pushed.get("url"))
        key = idempotency_key(integration, invoice["id"], action, str(message["outbox"]))
        if action == "void":
            return plugin.void_invoice(invoice, ref, key)  # type: ignore[no-any-return]
        if action == "credit_note":
            note = self._store.get_credit_note(message["credit_note"])
            if note is None:
                raise _Failed(f"credit note {message['credit_note']} does not exist")
            return plugin.push_credit_note(note, ref, key)  # type: ignore[no-any-return]
        if action in NOTICES:
            notice = _notice(invoice, action, message, iso(self._clock()))
            found = plugin.notify(invoice, ref, notice, key)
            return found if found is not None else ExternalRef("", None, None)
        if action == "payment":
            payment = self._store.get_payment(invoice["id"], message.get("payment"))
            if payment is None:
                raise _Failed(f"payment {message.get('payment')} does not exist")
            return plugin.record_payment(invoice, payment, ref, key)  # type: ignore[no-any-return]
        payment = {"amount": invoice.get("amount_paid") or invoice.get("amount_due", invoice["total"]),
                   "date": invoice.get("paid_at"), "reference": invoice.get("paid_reference"),
                   "source": invoice.get("paid_source")}
        return plugin.record_payment(invoice, payment, ref, key)  # type: ignore[no-any-return]

    # -- reading and re-driving ------------------------------------------------------------------
    def sync_state(self, invoice_id: str) -> dict[str, dict[str, Any]]:
        """``{integration: {status, external_id, number, url, error, attempts, updated_at}}`` of the
        invoice's push, with its later actions under ``actions``."""
        out: dict[str, dict[str, Any]] = {}
        records = self._store.invoice_syncs(invoice_id)
        for rec in sorted(records, key=lambda r: r["sk"]):
            name = rec["integration"]
            shown = {k: rec.get(k) for k in SHOWN}
            shown["attempts"] = int(rec.get("attempts", 0))
            if rec.get("action", "push") == "push":
                out.setdefault(name, {}).update(shown)
            else:
                out.setdefault(name, {}).setdefault("actions", []).append({"action": rec["action"], **shown})
        return out

    def redrive(self, invoice_id: str, integration: str | None = None) -> dict[str, Any]:
        """Send the invoice's sync again: failed records reopen (``pending``), and a message goes to
        each integration's queue for the push and every unsettled action. A synced record stays."""
        if integration is not None and integration not in self._integrations:
            raise InvalidField("integration", f"not enabled here: {integration!r} "
                                              f"(enabled: {', '.join(self._integrations) or 'none'})")
        if self._store.get_invoice(invoice_id) is None:
            raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
        names = [integration] if integration else list(self._integrations)
        records = {(r["integration"], r["sk"]): r for r in self._store.invoice_syncs(invoice_id)}
        now = iso(self._clock())
        sent: dict[str, int] = {}
        for name in names:
            messages = []
            push = records.get((name, f"SYNC#{name}"))
            if push is None or push["status"] != "synced":
                messages.append({"outbox": "redrive", "action": "push", "invoice": invoice_id})
            for (rec_name, _), rec in records.items():
                if rec_name != name or rec["status"] == "synced":
                    continue
                action_key = "" if rec.get("action", "push") == "push" else str(rec["outbox"])
                if rec["status"] == "failed":
                    self._store.reopen_sync(invoice_id, name, action_key, now)
                if action_key:
                    messages.append({"outbox": rec["outbox"], "action": rec["action"], "invoice": invoice_id,
                                     **_extras(rec)})
            if messages:
                self._queues[name].send(messages)
            sent[name] = len(messages)
        return {"invoice": invoice_id, "queued": sent}

    def redrive_failed(self, invoice_id: str | None = None) -> list[dict[str, Any]]:
        """Every invoice with a failed sync record (or just ``invoice_id``), re-driven."""
        if invoice_id:
            return [self.redrive(invoice_id)]
        invoices: list[str] = []
        cursor: str | None = None
        while True:
            page, cursor = self._store.failed_syncs(100, cursor)
            invoices += [r["invoice_id"] for r in page if r["invoice_id"] not in invoices]
            if not cursor:
                break
        return [self.redrive(inv) for inv in invoices]


def _extras(source: Mapping[str, Any]) -> dict[str, Any]:
    """The outbox record's extras for its messages (a stored number comes back as Decimal: int)."""
    return {k: int(v) if isinstance(v, Decimal) else v for k in EXTRAS if (v := source.get(k)) is not None}


def _notice(invoice: Mapping[str, Any], action: str, message: Mapping[str, Any], at: str) -> dict[str, Any]:
    """What a ``Notifier`` gets: ``overdue`` or ladder ``reminder`` ``step`` (1-based)."""
    owed = Decimal(str(invoice.get("amount_due", invoice.get("total", "0")))) - Decimal(str(invoice.get("amount_paid") or 0))
    if action == "overdue":
        return {"kind": "overdue", "at": at,
                "message": f"Invoice {invoice.get('number')} is overdue since {str(invoice.get('due_at'))[:10]}."}
    step = int(message.get("step", 0)) + 1
    return {"kind": "reminder", "step": step, "at": at,
            "message": f"Dunning reminder {step} for invoice {invoice.get('number')}: "
                       f"due {str(invoice.get('due_at'))[:10]}, {owed} {invoice.get('currency')} still unpaid."}


class _Failed(Exception):
    """Meterbill itself knows retrying cannot help (no vendor call made, or none that matters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
