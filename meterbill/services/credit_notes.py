"""Credit notes against final invoices: numbered gaplessly (own sequence), idempotent by key.

The credit goes to the invoice's unpaid amount first; what is left (an invoice already paid)
becomes the customer's credit balance, drawn by later invoices before anything is charged."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from meterbill.domain import limits
from meterbill.domain.adjustments import build_credit_note, credit_note_id
from meterbill.domain.errors import InvalidField
from meterbill.domain.instants import iso
from meterbill.domain.money import MONEY, format_amount, parse_amount
from meterbill.ports import BillingStore, Clock, ItemChange
from meterbill.services.errors import Conflict, NotFound

CREDITABLE = frozenset({"final", "paid", "uncollectible"})
MAX_ATTEMPTS = 10


def combine(changes: Sequence[ItemChange]) -> list[ItemChange]:
    """One transaction may touch an item once: merge changes to the same item."""
    merged: dict[tuple[str, str, str], ItemChange] = {}
    for ch in changes:
        key = (ch.kind, ch.owner, ch.key)
        if key in merged:
            was = merged[key]
            if was.set is None or ch.set is None or was.create or ch.create:
                raise ValueError(f"conflicting changes to {key}")
            ch = ItemChange(ch.kind, ch.owner, ch.key, {**was.set, **ch.set}, {**was.expect, **ch.expect})
        merged[key] = ch
    return list(merged.values())


class CreditNoteService:
    def __init__(self, store: BillingStore, clock: Clock, prefix: str = "CN-") -> None:
        self._store = store
        self._clock = clock
        self._prefix = prefix

    def issue(self, invoice_id: str, raw: Mapping[str, Any], key: str | None = None,
              extra: Sequence[ItemChange] = ()) -> dict[str, Any]:
        """raw: ``amount`` (before tax; tax-inclusive if the invoice's prices were) or ``lines``
        [{"line": index, "amount": …}] of the invoice, ``reason``, optional ``memo``.
        Repeating a request (same ``key``, or the same body without one) returns the same note."""
        note_id = credit_note_id(invoice_id, key or json.dumps(raw, sort_keys=True, default=str))
        for _ in range(MAX_ATTEMPTS):
            found = self._store.get_credit_note(note_id)
            if found is not None:
                return found
            invoice = self._store.get_invoice(invoice_id)
            if invoice is None:
                raise NotFound(f"invoice '{invoice_id}' does not exist", field="invoice")
            if invoice["status"] not in CREDITABLE:
                raise Conflict(f"invoice {invoice_id} is {invoice['status']}: only final, paid or uncollectible "
                               "invoices take credit notes", field="invoice")
            amount, lines = _amount_and_lines(raw, invoice)
            seq = self._store.credit_note_counter() + 1
            now = iso(self._clock())
            note = build_credit_note(note_id=note_id, number=f"{self._prefix}{seq:06d}", invoice=invoice,
                                     amount=amount, reason=raw.get("reason", "other"), memo=raw.get("memo"),
                                     lines=lines, created_at=now)
            currency = invoice["currency"]
            credited = Decimal(invoice.get("credited_total") or 0) + Decimal(note["total"])
            due = Decimal(invoice.get("amount_due", invoice["total"])) - Decimal(note["credited_to_invoice"])
            to_invoice = Decimal(invoice.get("credited_to_invoice_total") or 0) + Decimal(note["credited_to_invoice"])
            changes = [ItemChange("invoice", invoice_id, "",
                                  {"credited_total": format_amount(credited, currency),   # limits later notes
                                   "credited_to_invoice_total": format_amount(to_invoice, currency),
                                   "amount_due": format_amount(due, currency)},
                                  {"credited_total": invoice.get("credited_total")})]
            to_balance = Decimal(note["credited_to_balance"])
            if to_balance > 0:
                changes.append(ItemChange("grant", invoice["customer_id"], note_id, {
                    "id": note_id, "amount": note["credited_to_balance"], "remaining": note["credited_to_balance"],
                    "currency": currency, "granted_at": now, "reason": f"credit note {note['number']}",
                    "source": "credit_note"}, create=True))
            try:
                self._store.commit_credit_note(note, seq, combine([*changes, *extra]))
            except Conflict:
                continue  # invoice, sequence or the same note moved: re-read
            return note
        raise Conflict(f"credit note for invoice {invoice_id}: gave up after repeated concurrent changes")


def _amount_and_lines(raw: Mapping[str, Any], invoice: Mapping[str, Any]) -> tuple[Decimal, list[dict[str, Any]]]:
    currency = invoice["currency"]
    limits.check_text(raw.get("memo"), "memo", limits.MAX_MEMO)
    raw_lines = raw.get("lines") or []
    if "amount" in raw and raw["amount"] is not None:
        return parse_amount(raw["amount"], "amount", MONEY, currency), list(raw_lines)
    if not raw_lines:
        raise InvalidField("amount", "is required (or lines: [{\"line\": index, \"amount\": …}])")
    total, out = Decimal(0), []
    for i, item in enumerate(raw_lines):
        index = item.get("line")
        if type(index) is not int or not 0 <= index < len(invoice["lines"]):
            raise InvalidField(f"lines[{i}].line", f"must be the index of a line of the invoice (0 to "
                                                   f"{len(invoice['lines']) - 1})")
        amount = parse_amount(item.get("amount"), f"lines[{i}].amount", MONEY, currency)
        line = invoice["lines"][index]
        if amount > Decimal(line["amount"]):
            raise InvalidField(f"lines[{i}].amount", f"is more than the line's amount {line['amount']}")
        total += amount
        out.append({"line": index, "description": line["description"], "amount": format(amount, "f")})
    return total, out
