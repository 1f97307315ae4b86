"""Outbound webhooks as one more sink of the plugin contract.

A "vendor" here is the set of the operator's endpoints. What the contract asks of a sink maps to:
- ``validate_config``: the delivery timeout (``METERBILL_WEBHOOKS_TIMEOUT_S``, 1–30 s, default 10);
- ``push_invoice`` / ``void_invoice`` / ``record_payment`` / ``push_credit_note``: the event the
  action becomes (``invoice.finalized``, ``invoice.voided``, ``invoice.paid``,
  ``credit_note.created``), returned as its ref (id = the deterministic event id, number = type);
  the webhooks dispatcher (``meterbill/services/webhook_delivery.py``) then makes one delivery per
  subscribed endpoint, each with its own record and retries, which a single sink call could not;
- ``deliver``: one signed POST (Standard Webhooks, the ``standardwebhooks`` library: every active
  secret of the endpoint signs, so a rotated endpoint's receivers verify with the old or the new
  secret during the grace period), with a timeout, no redirects, no retries of its own;
- ``classify``: 2xx delivered; 408, 429 (``Retry-After``), 5xx, no answer → Retryable (the queue
  redelivers; the ``webhook-id`` stays the same); 3xx and other 4xx → Permanent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import urllib3
from standardwebhooks.webhooks import Webhook

from integrations.webhooks import mapping
from meterbill.domain.webhooks import event_id
from meterbill.integration.contract import (Classification, ExternalRef, Permanent, Problem, Retryable, Unknown,
                                            classify_own, classify_status, no_answer)
from meterbill.integration.errors import IntegrationError, retry_after_seconds
from meterbill.integration.settings import IntegrationSettings

DEFAULT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
USER_AGENT = "meterbill-webhooks/1"
MAX_REASON = 200


class DeliveryRefused(IntegrationError):
    """The receiver answered, but not 2xx: ``status``, its ``Retry-After`` in seconds, the start
    of its body (for the delivery record; never the request, which holds no secret either)."""

    def __init__(self, status: int, retry_after: float | None, body: str) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}" + (f": {body}" if body else ""))


class WebhooksIntegration:
    name: ClassVar[str] = "webhooks"

    def __init__(self, settings: IntegrationSettings, http: Any = None) -> None:
        self._settings = settings
        self._http = http or urllib3.PoolManager(num_pools=20, maxsize=4, retries=False)

    # -- configuration -----------------------------------------------------------------------------
    def validate_config(self, settings: IntegrationSettings) -> list[Problem]:
        raw = settings.get("timeout_s")
        if raw is None:
            return []
        try:
            ok = 1 <= float(raw) <= 30
        except ValueError:
            ok = False
        return [] if ok else [Problem("timeout_s", "must be a number of seconds from 1 to 30")]

    def timeout_s(self) -> float:
        return float(self._settings.get("timeout_s") or DEFAULT_TIMEOUT_S)

    # -- the sink: each action is an event ---------------------------------------------------------
    def event(self, action: str, invoice: Mapping[str, Any], note: Mapping[str, Any] | None = None
              ) -> tuple[str, str, str, dict[str, Any]] | None:
        """(event type, subject, when, data) of a sink action on ``invoice`` (``note``: a credit
        note's). ``when`` is the transition's own time (numbered_at, paid_at, void_at, the note's
        created_at): the same event always has the same timestamp, whoever re-drives it."""
        if action == "payment" and invoice.get("status") == "paid":
            action = "paid"   # the payment that settled it (offline, or Stripe's collection): invoice.paid,
            #                   the same event id whichever message carries it
        event_type = mapping.ACTION_EVENTS.get(action)
        if event_type is None:   # an action no event type names (a partial payment, a reminder)
            return None
        if action == "credit_note":
            if note is None:
                raise ValueError("a credit_note event needs the credit note")
            return event_type, str(note["id"]), str(note["created_at"]), mapping.credit_note_data(note)
        when = invoice.get(mapping.AT_FIELDS[action]) or invoice.get("issued_at") or invoice.get("created_at")
        return event_type, str(invoice["id"]), str(when), mapping.invoice_data(invoice)

    def _ref(self, action: str, invoice: Mapping[str, Any], note: Mapping[str, Any] | None = None) -> ExternalRef:
        described = self.event(action, invoice, note)
        if described is None:
            raise Permanent(f"no webhook event for {action!r}")
        event_type, subject, _, _ = described
        return ExternalRef(event_id(event_type, subject), event_type)

    def validate_invoice(self, invoice: Mapping[str, Any]) -> list[Problem]:
        return []   # any invoice can be described; receivers get meterbill's own fields

    def upsert_customer(self, customer: Mapping[str, Any]) -> ExternalRef:
        return ExternalRef(str(customer["id"]))   # receivers have no customer object to create

    def find_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> ExternalRef | None:
        return None   # nothing is created at a receiver: a repeated delivery carries the same webhook-id

    def push_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        return self._ref("push", invoice)

    def void_invoice(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        return self._ref("void", invoice)

    def push_credit_note(self, note: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        return self._ref("credit_note", {"id": note["invoice_id"]}, note)

    def record_payment(self, invoice: Mapping[str, Any], payment: Mapping[str, Any], invoice_ref: ExternalRef,
                       idempotency_key: str) -> ExternalRef:
        return self._ref("paid", invoice)

    # -- delivery ----------------------------------------------------------------------------------
    @staticmethod
    def sign(secrets: Sequence[str], msg_id: str, at: datetime, body: str) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt: every secret in ``secrets`` signs
        (``webhook-signature: v1,<new> v1,<old>``)."""
        signatures = " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signatures}

    def deliver(self, url: str, secrets: Sequence[str], msg_id: str, at: datetime, body: str) -> int:
        """POST ``body`` to ``url``, signed; the status on 2xx, else DeliveryRefused. A timeout or
        a refused connection raises urllib3's error (``classify``: Retryable)."""
        headers = {**self.sign(secrets, msg_id, at, body), "content-type": "application/json",
                   "user-agent": USER_AGENT}
        resp = self._http.request("POST", url, body=body.encode(), headers=headers, redirect=False, retries=False,
                                  preload_content=False,
                                  timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=self.timeout_s()))
        try:
            if 200 <= resp.status < 300:
                return int(resp.status)
            text = (resp.read(MAX_REASON, decode_content=True) or b"").decode("utf-8", "replace").strip()
            raise DeliveryRefused(resp.status, retry_after_seconds(resp.headers.get("retry-after")),
                                  " ".join(text.split())[:MAX_REASON])
        finally:
            resp.release_conn()

    def classify(self, exc: BaseException) -> Classification:
        own = classify_own(exc)
        if own is not None:
            return own
        if isinstance(exc, DeliveryRefused):
            what = str(exc)
            if exc.status == 408:
                return Retryable(what, exc.retry_after)
            if 300 <= exc.status < 400:
                return Permanent(f"{what} (redirects are not followed: register the final URL)")
            return classify_status("the webhook receiver", exc.status, what, created=False,
                                   retry_after=exc.retry_after)
        if isinstance(exc, urllib3.exceptions.HTTPError):
            return no_answer("webhook", exc, created=False)
        return Unknown(f"unexpected {type(exc).__name__}")

