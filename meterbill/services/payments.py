"""Payments on invoices: offline ones (``POST /v1/invoices/{id}/payments``) and the ones an
integration collected (a Stripe ``invoice.paid`` webhook), so the balance has one truth.

Each payment is one transaction (``store.add_payment``): the payment record, the invoice's
``amount_paid`` (its balance is ``amount_due - amount_paid``) and an outbox record that carries it
to every enabled integration (``record_payment``). The payment that brings the balance to zero
makes the invoice ``paid`` in the same transaction (and takes it off the dunning list). A
payment's id derives from its reference (or the request's Idempotency-Key): the same reference
twice is one payment. A payment larger than the balance is refused (400 naming ``amount``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from meterbill.domain import limits
from meterbill.domain.dunning import balance_due, payment_id
from meterbill.domain.instants import iso
from meterbill.domain.money import MONEY, format_amount, parse_amount
from meterbill.ports import Clock
from meterbill.services.errors import Conflict, InvalidField, NotFound

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 10
MAX_REFERENCE = 255
PAYABLE = ("final", "uncollectible")


class PaymentService:
    def __init__(self, store: Any, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def record(self, invoice_id: str, raw: Mapping[str, Any], idempotency_key: str | None = None,
               source: str = "offline") -> tuple[dict[str, Any], bool]:
        """raw: ``amount`` (decimal string in the invoice's currency), ``date`` (YYYY-MM-DD, default
        today), ``reference`` (required unless ``idempotency_key``). Returns (the payment, created):
        a repeated reference returns the first payment (``created`` False)."""
        reference = raw.get("reference")
        if reference is not None and (type(reference) is not str or not reference.strip()):
            raise InvalidField("reference", "must be a non-blank text (the bank or cheque reference)")
        limits.check_text(reference, "reference", MAX_REFERENCE)
        if reference is None and not idempotency_key:
            raise InvalidField("reference", "is required (the bank transfer's or cheque's reference), or send an "
                                            "Idempotency-Key header: a retried request must not pay twice")
        pay_id = payment_id(invoice_id, f"ref:{reference}" if reference is not None else f"key:{idempotency_key}")
        paid_on = _date(raw.get("date"), self._clock().date())
        for _ in range(MAX_ATTEMPTS):
            invoice = self._invoice(invoice_id)
            found = self._store.get_payment(invoice_id, pay_id)
            amount = parse_amount(raw.get("amount"), "amount", MONEY, invoice["currency"])
            if found is not None:
                if Decimal(str(found["amount"])) != amount:
                    raise Conflict(f"payment {reference or idempotency_key!r} is already recorded on invoice "
                                   f"{invoice_id} with amount {found['amount']}", field="reference")
                return found, False
            _check(invoice, amount)
            try:
                return self._add(invoice, pay_id, amount, paid_on, reference, source), True
            except Conflict:
                continue   # another payment or a credit note moved the invoice: re-read
        raise Conflict(f"payment on invoice {invoice_id}: gave up after repeated concurrent changes")

    def settle(self, invoice_id: str, source: str, reference: str, at: str) -> dict[str, Any] | None:
        """An integration collected the invoice in full (Stripe's ``invoice.paid``): its remaining
        balance becomes a payment record from ``source`` (the same reference twice is one payment),
        which makes it paid. None when nothing is left to pay (already paid, or nothing owed)."""
        pay_id = payment_id(invoice_id, f"{source}:{reference}")
        for _ in range(MAX_ATTEMPTS):
            invoice = self._invoice(invoice_id)
            found = self._store.get_payment(invoice_id, pay_id)
            if found is not None:
                return found
            balance = _balance(invoice)
            if invoice["status"] not in PAYABLE or balance <= 0:
                return None
            try:
                return self._add(invoice, pay_id, balance, date.fromisoformat(at[:10]), reference, source)
            except Conflict:
                continue
        raise Conflict(f"payment on invoice {invoice_id}: gave up after repeated concurrent changes")

    def list(self, invoice_id: str) -> list[dict[str, Any]]:
        self._invoice(invoice_id)
        return list(self._store.list_payments(invoice_id))

    # -- internals ---------------------------------------------------------------------------------
    def _invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = self._store.get_invoice(invoice_id)
        if invoice is None:
            raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
        return dict(invoice)

    def _add(self, invoice: Mapping[str, Any], pay_id: str, amount: Decimal, paid_on: date,
             reference: str | None, source: str) -> dict[str, Any]:
        currency = invoice["currency"]
        balance = _balance(invoice)
        now = iso(self._clock())
        paid = Decimal(str(invoice.get("amount_paid") or 0)) + amount
        left = balance - amount
        count = int(invoice.get("payment_count") or 0)
        payment = {"id": pay_id, "invoice_id": invoice["id"], "seq": count + 1, "amount": format_amount(amount, currency),
                   "currency": currency, "date": paid_on.isoformat(), "reference": reference, "source": source,
                   "recorded_at": now, "balance_after": format_amount(left, currency)}
        changes: dict[str, Any] = {"amount_paid": format_amount(paid, currency), "last_payment_at": now}
        if left == 0:
            changes.update(status="paid", paid_at=now, paid_reference=reference or pay_id, paid_source=source,
                           payment_status="paid")
        self._store.add_payment({k: v for k, v in payment.items() if v is not None},
                                count, str(invoice["amount_due"]), changes, now)
        log.info("payment %s of %s %s on invoice %s (%s); balance %s", pay_id, payment["amount"], currency,
                 invoice["id"], source, payment["balance_after"])
        return payment


def _check(invoice: Mapping[str, Any], amount: Decimal) -> None:
    """Why ``amount`` cannot be paid on ``invoice`` (409 for its status, 400 naming ``amount``)."""
    status, currency = invoice["status"], invoice["currency"]
    if status not in PAYABLE:
        raise Conflict(f"invoice {invoice['id']} is {status}: payments are recorded on final or uncollectible "
                             "invoices only", field="status")
    if amount <= 0:
        raise InvalidField("amount", f"must be more than 0 {currency}")
    balance = _balance(invoice)
    if amount > balance:
        raise InvalidField("amount", f"{format_amount(amount, currency)} is more than the balance due "
                                     f"{format_amount(balance, currency)} {currency}: overpayments are refused")


def _balance(invoice: Mapping[str, Any]) -> Decimal:
    return balance_due(Decimal(str(invoice.get("amount_due", invoice["total"]))),
                       Decimal(str(invoice.get("amount_paid") or 0)))


def _date(value: Any, default: date) -> date:
    if value is None:
        return default
    if type(value) is not str:
        raise InvalidField("date", "must be a date such as \"2026-11-20\"")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidField("date", f"must be a date such as \"2026-11-20\", not {value!r}") from None
