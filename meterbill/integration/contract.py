"""The plugin contract: ``InvoiceSink`` and ``PaymentSource`` and the records they exchange.

Plugins get plain documents: the invoice document ``build_invoice`` produces (as stored), the
customer document and the credit note document (``build_credit_note``). They return frozen records;
they never see meterbill's tables. Everything a plugin sends carries a deterministic idempotency
key (``keys.idempotency_key``) and a vendor object is matched to meterbill by meterbill's ids kept
on it (metadata, invoice number), never by the vendor's id alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Protocol, runtime_checkable

from meterbill.integration.errors import ConfigError, PermanentFailure
from meterbill.integration.settings import IntegrationSettings

Document = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a configuration or an invoice cannot go to a vendor, naming the field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class ExternalRef:
    """A vendor object that stands for a meterbill one: its id, its number, a URL to show (for a
    Stripe invoice the hosted invoice page, which becomes the invoice's ``payment_url``)."""

    id: str
    number: str | None = None
    url: str | None = None


# -- error classification: what the dispatcher does with a failed call ----------------------------

@dataclass(frozen=True, slots=True)
class Retryable:
    """Try again later: throttled (``after_s``: the vendor's Retry-After, if it gave one), a lock
    timeout, a 5xx or connection error on a call that created nothing."""

    reason: str
    after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Permanent:
    """Retrying cannot help (invalid request, bad credentials, a missing mapping, totals that do not
    match): the sync record becomes ``failed`` with this reason and someone is alerted."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The call may or may not have taken effect (a timeout or 5xx on a create): the next attempt
    must look the object up (``find_invoice``) before creating anything."""

    reason: str


Classification = Retryable | Permanent | Unknown


def classify_own(exc: BaseException) -> Classification | None:
    """What the integration layer's own errors mean (None: a vendor's error, the plugin decides)."""
    if isinstance(exc, PermanentFailure):
        return Permanent(f"{exc.flag}: {exc}")
    if isinstance(exc, ConfigError):
        return Permanent(str(exc))
    return None


def classify_status(vendor: str, status: int, what: str, *, created: bool,
                    retry_after: float | None = None) -> Classification:
    """An HTTP status from a vendor API: 429 → Retryable (``retry_after``); 401/403 → Permanent
    (configuration); 5xx (or 0: no answer) → Unknown after a create, else Retryable; other 4xx →
    Permanent. ``what`` describes the error (no secret)."""
    if status == 429:
        return Retryable(what, retry_after)
    if status in (401, 403):
        return Permanent(f"configuration: {vendor} refused the credentials or their scopes: {what}")
    if status >= 500 or status == 0:
        return Unknown(what) if created else Retryable(what, retry_after)
    if status == 404:
        return Permanent(f"not found at {vendor}: {what}")
    if 400 <= status < 500:
        return Permanent(what)
    return Unknown(what)


def no_answer(vendor: str, exc: BaseException, *, created: bool) -> Classification:
    """A call that got no answer (timeout, reset, refused): Unknown after a create, else Retryable."""
    what = f"{type(exc).__name__}: the {vendor} call did not complete"
    return Unknown(what) if created else Retryable(what)


def redacted(found: Classification, settings: IntegrationSettings) -> Classification:
    """``found`` with every secret value of ``settings`` masked in its reason."""
    if isinstance(found, Retryable):
        return Retryable(settings.redact(found.reason), found.after_s)
    if isinstance(found, Permanent):
        return Permanent(settings.redact(found.reason))
    return Unknown(settings.redact(found.reason))


# -- payments flowing back ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A verified vendor event about one meterbill invoice.

    ``status``: the payment status it implies (``payments.STATUSES``), or None for an event that
    moves no status (``flag`` says what it is: ``refund``, ``dispute_opened``, ``dispute_closed``,
    ``finalization_failed``). ``amount`` in major units of ``currency`` (Decimal) when the event
    names one. Apply it with ``payments.advance``: the status only moves forward."""

    event_id: str
    type: str                              # the vendor's event type, e.g. "invoice.paid"
    meterbill_invoice_id: str
    status: str | None
    occurred_at: str                       # ISO 8601 UTC
    external_id: str | None = None         # the vendor's invoice id
    amount: Decimal | None = None
    currency: str | None = None
    flag: str | None = None
    detail: str | None = None              # e.g. the finalization error's message


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified event meterbill does not act on (unknown type, or no meterbill invoice id): the
    webhook answers 2xx and nothing changes."""

    event_id: str
    type: str
    reason: str


@dataclass(frozen=True, slots=True)
class ExternalInvoiceState:
    """The vendor's view of an invoice, re-read before acting on an event or for reconciliation."""

    external_id: str
    meterbill_invoice_id: str | None
    status: str | None                     # a ``payments.STATUSES`` value, None for a draft
    currency: str
    total: Decimal
    amount_due: Decimal
    amount_paid: Decimal
    number: str | None = None
    url: str | None = None


# -- the two protocols -------------------------------------------------------------------------------

@runtime_checkable
class InvoiceSink(Protocol):
    """A system every final invoice is pushed to exactly once (Stripe, HubSpot, Xero, webhooks).

    Built by its factory from its ``IntegrationSettings``. Every write takes or derives a
    deterministic idempotency key; every method may raise the vendor's own errors, which
    ``classify`` maps to Retryable / Permanent / Unknown."""

    name: ClassVar[str]

    def validate_config(self, settings: IntegrationSettings) -> list[Problem]: ...
    def validate_invoice(self, invoice: Document) -> list[Problem]: ...
    def upsert_customer(self, customer: Document) -> ExternalRef: ...
    def find_invoice(self, invoice: Document, customer_ref: ExternalRef) -> ExternalRef | None: ...
    def push_invoice(self, invoice: Document, customer_ref: ExternalRef, idempotency_key: str) -> ExternalRef: ...
    def void_invoice(self, invoice: Document, invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef: ...
    def push_credit_note(self, note: Document, invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef: ...
    def record_payment(self, invoice: Document, payment: Document, invoice_ref: ExternalRef,
                       idempotency_key: str) -> ExternalRef: ...
    def classify(self, exc: BaseException) -> Classification: ...


@runtime_checkable
class Notifier(Protocol):
    """Optional: a sink that can put a notice in front of people (HubSpot: a task on the company)
    when a payment fails or an invoice becomes overdue, and for each dunning reminder.

    ``notice``: ``{"kind": "payment_failed" | "overdue" | "reminder", "step": <int, reminders>,
    "message": <text>}``. The same ``idempotency_key`` never makes a second notice (look-up first).
    Returns the notice's ref (None when the sink has nothing to do for this kind). A plugin without
    ``notify`` is still a valid sink: the registry checks the method only where it is defined."""

    name: ClassVar[str]

    def notify(self, invoice: Document, invoice_ref: ExternalRef, notice: Document,
               idempotency_key: str) -> ExternalRef | None: ...


@runtime_checkable
class PaymentSource(Protocol):
    """A system that collects payments and tells meterbill about them (Stripe)."""

    name: ClassVar[str]

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent | Ignored: ...
    def fetch_invoice_state(self, external_id: str) -> ExternalInvoiceState: ...
