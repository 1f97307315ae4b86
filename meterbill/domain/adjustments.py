"""What happens to a rated invoice after pricing (pure): discounts, prepaid credits, credit notes.

Order on every invoice (the same as Stripe's: discounts before tax, credit balance after it):

    subtotal (charge lines + late-usage adjustments + progressive netting)
  − discounts                       -> taxable amount -> taxes
  = total                           (tax added, or contained when prices include tax)
  − prepaid credits drawn           -> amount due

Each amount is rounded once to the currency's minor unit; every sum above is exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from meterbill.domain import limits
from meterbill.domain.errors import InvalidField
from meterbill.domain.instants import parse_instant
from meterbill.domain.money import (CONTEXT, MONEY, PERCENT, format_amount, minor_units, parse_amount, parse_decimal,
                                    quantize)

ZERO = Decimal(0)
HUNDRED = Decimal(100)
DURATIONS = ("once", "repeating", "forever")
CREDIT_NOTE_REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory",
                       "late_usage_adjustment", "other")


# -- discounts ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Discount:
    id: str
    kind: str                      # "percentage" | "fixed"
    value: Decimal                 # percent (20 = 20 %) or an amount in the customer's currency
    duration: str                  # once | repeating | forever
    periods: int | None = None     # for "repeating": how many billing periods it applies to
    meter: str | None = None       # None: the whole invoice; else only that meter's lines
    name: str | None = None
    applied: int = 0               # billing periods it has been applied in
    remaining: Decimal | None = None  # fixed "once": the part not used yet (carried forward)
    last_period: str | None = None    # the billing period it was last applied in
    period_used: Decimal = ZERO       # fixed, per period: what that period's invoices took already

    @property
    def active(self) -> bool:
        return self.active_in(None)

    def active_in(self, period: str | None) -> bool:
        """Whether it applies to an invoice of billing period ``period``. A period billed by several
        invoices (progressive billing) counts once: all its invoices get the discount."""
        if period is not None and period == self.last_period and not (self.kind == "fixed" and self.duration == "once"):
            return self.kind == "percentage" or self.period_used < self.value
        if self.duration == "forever":
            return True
        if self.duration == "repeating":
            return self.applied < (self.periods or 0)
        if self.kind == "fixed":  # once, fixed: until the amount is used up
            return (self.value if self.remaining is None else self.remaining) > 0
        return self.applied == 0

    def label(self, currency: str) -> str:
        what = f"{format(self.value.normalize(), 'f')}%" if self.kind == "percentage" else \
            f"{format(self.value, 'f')} {currency}"
        scope = f" on {self.meter}" if self.meter else ""
        return f"{self.name or 'Discount'} ({what}{scope})"


def parse_discount(discount_id: str, raw: Mapping[str, Any]) -> Discount:
    kind = raw.get("type")
    if kind not in ("percentage", "fixed"):
        raise InvalidField("type", "must be 'percentage' or 'fixed'")
    if kind == "percentage":
        value = parse_decimal(raw.get("percentage"), "percentage")
        if not ZERO < value <= HUNDRED:
            raise InvalidField("percentage", "must be more than 0 and at most 100")
    else:
        value = parse_decimal(raw.get("amount"), "amount")
        if value <= 0:
            raise InvalidField("amount", "must be more than 0")
    duration = raw.get("duration", "once")
    if duration not in DURATIONS:
        raise InvalidField("duration", f"must be one of: {', '.join(DURATIONS)}")
    periods = raw.get("periods")
    if duration == "repeating":
        if type(periods) is not int or not 1 <= periods <= 1200:
            raise InvalidField("periods", "is required for a repeating discount: a whole number from 1 to 1200")
    elif periods is not None:
        raise InvalidField("periods", "only applies to a repeating discount")
    meter = raw.get("meter")
    if meter is not None and (type(meter) is not str or not meter):
        raise InvalidField("meter", "must be the code of a meter the customer's plan charges")
    name = raw.get("name")
    if name is not None and type(name) is not str:
        raise InvalidField("name", "must be a string")
    return Discount(discount_id, kind, value, duration, periods, meter, name)


def check_discount_input(raw: Mapping[str, Any], currency: str) -> None:
    """What a client may save beyond what :func:`parse_discount` reads (it also reads stored
    discounts): the amount grammar (a percentage with at most 6 decimals, a fixed amount in whole
    minor units below 10^12) and the name's length."""
    if raw.get("type") == "percentage":
        parse_amount(raw.get("percentage"), "percentage", PERCENT)
    else:
        parse_amount(raw.get("amount"), "amount", MONEY, currency)
    limits.check_text(raw.get("name"), "name", limits.MAX_NAME)


def discount_from_doc(doc: Mapping[str, Any]) -> Discount:
    periods = doc.get("periods")
    d = parse_discount(doc["id"], {**doc, "periods": None if periods is None else int(periods)})
    remaining = doc.get("remaining")
    return replace(d, applied=int(doc.get("applied", 0)),
                   remaining=None if remaining is None else Decimal(remaining),
                   last_period=doc.get("last_period"), period_used=Decimal(doc.get("period_used") or 0))


@dataclass(frozen=True, slots=True)
class DiscountLine:
    discount: Discount
    amount: Decimal                # positive: what it takes off
    base: Decimal                  # what it applied to

    def after(self, currency: str, period: str | None = None) -> dict[str, Any]:
        """The discount's state once this invoice (of billing period ``period``) is final."""
        d = self.discount
        same = period is not None and period == d.last_period
        state: dict[str, Any] = {"applied": d.applied + (0 if same else 1), "last_period": period}
        if d.kind == "fixed" and d.duration == "once":
            state["remaining"] = format_amount((d.value if d.remaining is None else d.remaining) - self.amount,
                                               currency)
        elif d.kind == "fixed":
            state["period_used"] = format_amount((d.period_used if same else ZERO) + self.amount, currency)
        return state


def apply_discounts(lines: Iterable[tuple[str | None, Decimal]], discounts: Sequence[Discount],
                    currency: str, rounding: str = ROUND_HALF_UP, period: str | None = None) -> list[DiscountLine]:
    """``lines``: (meter or None, amount) of every line before discounts, of an invoice of billing
    period ``period``. Active discounts apply in order; none takes more than what is left of its
    base after the ones before it, so the invoice never goes below zero through discounts; a fixed
    discount per period takes at most its amount over all the invoices of one period."""
    by_meter: dict[str | None, Decimal] = {}
    for meter, amount in lines:
        by_meter[meter] = by_meter.get(meter, ZERO) + amount
    left = {m: max(a, ZERO) for m, a in by_meter.items()}
    invoice_left = max(sum(by_meter.values(), ZERO), ZERO)
    out: list[DiscountLine] = []
    for d in discounts:
        if not d.active_in(period):
            continue
        base = min(left.get(d.meter, ZERO), invoice_left) if d.meter else invoice_left
        if d.kind == "percentage":
            amount = quantize(CONTEXT.divide(CONTEXT.multiply(base, d.value), HUNDRED), currency, rounding)
        elif d.duration == "once":
            amount = quantize(d.value if d.remaining is None else d.remaining, currency)
        else:
            amount = quantize(d.value - (d.period_used if period is not None and period == d.last_period else ZERO),
                              currency)
        amount = min(amount, base)
        out.append(DiscountLine(d, amount, base))
        invoice_left -= amount
        if d.meter:
            left[d.meter] = left.get(d.meter, ZERO) - amount
    return out


# -- prepaid credits --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    amount: Decimal                # granted
    remaining: Decimal
    granted_at: datetime
    expires_at: datetime | None = None
    reason: str | None = None

    def usable(self, at: datetime) -> bool:
        return self.remaining > 0 and (self.expires_at is None or at < self.expires_at)


def parse_grant(grant_id: str, raw: Mapping[str, Any], currency: str, now: datetime) -> Grant:
    amount = quantize(parse_amount(raw.get("amount"), "amount", MONEY, currency), currency)
    if amount <= 0:
        raise InvalidField("amount", f"must be at least one minor unit of {currency}")
    expires = raw.get("expires_at")
    expires_at = None if expires is None else parse_instant(expires, "expires_at")
    if expires_at is not None and expires_at <= now:
        raise InvalidField("expires_at", "must be in the future")
    reason = limits.check_text(raw.get("reason"), "reason", limits.MAX_REASON)
    return Grant(grant_id, amount, amount, now, expires_at, reason)


def grant_from_doc(doc: Mapping[str, Any]) -> Grant:
    expires = doc.get("expires_at")
    return Grant(doc["id"], Decimal(doc["amount"]), Decimal(doc["remaining"]),
                 parse_instant(doc["granted_at"], "granted_at"),
                 None if not expires else parse_instant(expires, "expires_at"), doc.get("reason"))


MAX_GRANTS_PER_INVOICE = 40   # one transaction writes every grant it draws from (100 items at most)
MAX_ACTIVE_DISCOUNTS = 10


def draw_credits(due: Decimal, grants: Iterable[Grant], at: datetime) -> list[tuple[Grant, Decimal]]:
    """Draw ``due`` from the grants usable at ``at``: soonest expiry first (never-expiring last),
    then oldest; from at most MAX_GRANTS_PER_INVOICE grants (the rest stay for later invoices).
    Returns (grant, amount drawn) for each grant touched."""
    usable = sorted((g for g in grants if g.usable(at)),
                    key=lambda g: (g.expires_at is None, g.expires_at or g.granted_at, g.granted_at, g.id))
    out = []
    for g in usable[:MAX_GRANTS_PER_INVOICE]:
        if due <= 0:
            break
        take = min(g.remaining, due)
        out.append((g, take))
        due -= take
    return out


def balance(grants: Iterable[Grant], at: datetime) -> Decimal:
    return sum((g.remaining for g in grants if g.usable(at)), ZERO)


# -- credit notes -----------------------------------------------------------------------
def credit_taxes(credit: Decimal, invoice: Mapping[str, Any], currency: str) -> list[tuple[Mapping[str, Any], Decimal]]:
    """The tax a credit of ``credit`` (pre-tax, or tax-inclusive when the invoice's prices were)
    gives back: each of the invoice's tax lines in proportion, rounded once."""
    out = []
    for tax in invoice.get("taxes") or []:
        p = Decimal(tax["percentage"])
        taxed = CONTEXT.multiply(credit, p)  # exact: a plain * rounds to 28 digits
        raw = CONTEXT.divide(taxed, HUNDRED + p) if invoice.get("tax_inclusive") else CONTEXT.divide(taxed, HUNDRED)
        out.append((tax, quantize(raw, currency)))
    return out


def creditable(invoice: Mapping[str, Any]) -> Decimal:
    """What can still be credited on an invoice: its total less earlier credit notes."""
    return Decimal(invoice["total"]) - Decimal(invoice.get("credited_total") or 0)


def creditable_before_tax(invoice: Mapping[str, Any]) -> Decimal:
    """The largest pre-tax credit (tax-inclusive when the invoice's prices were) whose total with
    the tax it gives back still fits in :func:`creditable` — rounded down, never over."""
    left = creditable(invoice)
    currency = invoice["currency"]
    rate = sum((Decimal(t["percentage"]) for t in invoice.get("taxes") or []), ZERO)
    if invoice.get("tax_inclusive") or not rate:
        return max(left, ZERO)
    unit = Decimal(1).scaleb(-minor_units(currency))

    def fits(amount: Decimal) -> bool:
        return amount + sum((t for _, t in credit_taxes(amount, invoice, currency)), ZERO) <= left

    guess = quantize(CONTEXT.divide(left * HUNDRED, HUNDRED + rate), currency, ROUND_DOWN)
    while fits(guess + unit):         # the tax is rounded: a step or two more may still fit
        guess += unit
    while guess > 0 and not fits(guess):
        guess -= unit
    return max(guess, ZERO)


def credit_note_id(invoice_id: str, key: str) -> str:
    return "cn_" + hashlib.blake2b(f"{invoice_id}\x1f{key}".encode(), digest_size=10).hexdigest()


def build_credit_note(*, note_id: str, number: str, invoice: Mapping[str, Any], amount: Decimal,
                      reason: str, memo: str | None, lines: Sequence[Mapping[str, Any]],
                      created_at: str) -> dict[str, Any]:
    """A credit note of ``amount`` (before tax; tax-inclusive when the invoice's prices were)
    against a final invoice. Unpaid part of the invoice first; the rest becomes credit balance."""
    currency = invoice["currency"]
    if reason not in CREDIT_NOTE_REASONS:
        raise InvalidField("reason", f"must be one of: {', '.join(CREDIT_NOTE_REASONS)}")
    if amount <= 0 or quantize(amount, currency) != amount:
        raise InvalidField("amount", f"must be a positive amount in whole minor units of {currency}")
    taxes = credit_taxes(amount, invoice, currency)
    tax_total = sum((t for _, t in taxes), ZERO)
    total = amount if invoice.get("tax_inclusive") else amount + tax_total
    if total > creditable(invoice):
        raise InvalidField("amount", f"credits {format_amount(total, currency)} {currency} with tax; only "
                                     f"{format_amount(creditable(invoice), currency)} {currency} of invoice "
                                     f"{invoice.get('number')} is left to credit")
    unpaid = Decimal(invoice.get("amount_due", invoice["total"])) if invoice["status"] != "paid" else ZERO
    to_invoice = min(total, max(unpaid, ZERO))
    return {"id": note_id, "number": number, "invoice_id": invoice["id"], "invoice_number": invoice.get("number"),
            "customer_id": invoice["customer_id"], "customer": invoice.get("customer"), "currency": currency,
            "reason": reason, "memo": memo, "lines": list(lines),
            "subtotal": format_amount(amount, currency),
            "taxes": [{"name": t["name"], "percentage": t["percentage"], "amount": format_amount(a, currency)}
                      for t, a in taxes],
            "tax_total": format_amount(tax_total, currency), "tax_inclusive": bool(invoice.get("tax_inclusive")),
            "total": format_amount(total, currency),
            "credited_to_invoice": format_amount(to_invoice, currency),
            "credited_to_balance": format_amount(total - to_invoice, currency),
            "status": "issued", "created_at": created_at}
