"""Invoice documents: deterministic ids, numbering, due dates, JSON-ready shape (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from meterbill.domain.adjustments import DiscountLine, Grant
from meterbill.domain.charges import TierLine
from meterbill.domain.dunning import balance_due
from meterbill.domain.instants import iso
from meterbill.domain.money import format_amount
from meterbill.domain.periods import Period
from meterbill.domain.rating import Line, Rated
from meterbill.domain.taxes import TaxLine, tax_docs, total_with


def invoice_id(customer_id: str, period: Period) -> str:
    """Same customer + same period start -> same id, whichever run creates it (draft or final)."""
    digest = hashlib.blake2b(f"{customer_id}\x1f{period.key}".encode(), digest_size=10).hexdigest()
    return f"in_{digest}"


def invoice_number(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:06d}"


def _dec(value: Any) -> str | None:
    return None if value is None else format(value, "f")


def _tier(t: TierLine, currency: str) -> dict[str, Any]:
    doc = {"tier": t.index + 1, "from": _dec(t.lower), "up_to": _dec(t.upper), "units": _dec(t.units),
           "unit_amount": _dec(t.unit_amount), "flat_amount": _dec(t.flat_amount),
           "amount": _dec(t.amount)}
    if t.rate is not None:  # graduated_percentage: the tier's percent (unit_amount = rate / 100)
        doc["rate"] = _dec(t.rate)
    return doc


def _line(line: Line, currency: str, period: Period) -> dict[str, Any]:
    covers = line.covers or period
    doc: dict[str, Any] = {"type": line.kind, "description": line.description,
                           "amount": format_amount(line.amount, currency),
                           "amount_unrounded": _dec(line.amount_unrounded),
                           "period": {"start": iso(covers.start), "end": iso(covers.end)}}
    if line.free_units is not None:
        doc["free_units"] = _dec(line.free_units)
    if line.meter is not None:
        doc.update(meter=line.meter, quantity=_dec(line.quantity), unit_amount=_dec(line.unit_amount),
                   tiers=[_tier(t, currency) for t in line.tiers])
        if line.unit:
            doc["unit"] = line.unit
        if line.parts:
            doc["parts"] = [{"label": p.label, "units": _dec(p.units), "unit_amount": _dec(p.unit_amount),
                             "amount": _dec(p.amount)} for p in line.parts]
    if line.proration is not None:
        doc["proration"] = _dec(line.proration)
    if line.refers_to is not None:
        doc["refers_to"] = dict(line.refers_to)
        if line.parts and line.meter is None:
            doc["parts"] = [{"label": p.label, "units": _dec(p.units), "amount": _dec(p.amount)} for p in line.parts]
    if line.plan is not None:
        doc["plan"] = line.plan
    if line.override:
        doc["override"] = True
    return doc


def build_invoice(*, invoice_id: str, customer: Mapping[str, Any], plan_code: str,
                  plan_version: int, period: Period, rated: Rated, created_at: str,
                  number: str | None = None, status: str | None = None,
                  taxes: Sequence[TaxLine] = (), tax_inclusive: bool = False,
                  discounts: Sequence[DiscountLine] = (), credits: Sequence[tuple[Grant, Decimal]] = (),
                  collection_method: str = "send_invoice") -> dict[str, Any]:
    """``rated.lines``: every line before discounts (charges, late-usage adjustments, progressive
    netting); ``taxes`` computed on subtotal - discounts; ``credits`` drawn from the total.
    ``status``: ``draft`` or ``finalizing`` (committed, amounts fixed; the sequencer gives it its
    gapless number and makes it ``final``); by default ``final`` when ``number`` is given.
    Collection terms are the customer's, copied now (``collection_method``: the customer's, else
    the given default): an invoice the close commits (``finalizing``) is due ``payment_terms_days``
    after the commit (``created_at``); a draft's due date is an estimate from the period's end."""
    if rated.plan is not None:  # the plan in effect at the period's end (the period may span changes)
        plan_code, plan_version = rated.plan.code, rated.plan.version or plan_version
    terms = int(customer.get("payment_terms_days", 30))
    issued = period.end
    status = status or ("draft" if number is None else "final")
    # committed by the close: due ``terms`` days after the commit; a draft's is an estimate
    due_from = datetime.fromisoformat(created_at.replace("Z", "+00:00")) if status == "finalizing" else issued
    currency = rated.currency
    tax_total = sum((t.amount for t in taxes), Decimal(0))
    discount_total = sum((d.amount for d in discounts), Decimal(0))
    total = total_with(rated.subtotal - discount_total, taxes, tax_inclusive)
    credit_total = sum((a for _, a in credits), Decimal(0))
    return {
        "id": invoice_id, "number": number, "status": status,
        "customer_id": customer["id"],
        "customer": {"id": customer["id"], "name": customer["name"], "email": customer.get("email"),
                     "address": dict(customer.get("address") or {}), "tax_id": customer.get("tax_id")},
        "plan": plan_code, "plan_version": plan_version, "currency": currency,
        "period": {"start": iso(period.start), "end": iso(period.end)},
        "issued_at": iso(issued), "due_at": iso(due_from + timedelta(days=terms)),
        "payment_terms_days": terms,
        "collection_method": customer.get("collection_method") or collection_method,
        "lines": [_line(ln, currency, period) for ln in rated.lines],
        "subtotal": format_amount(rated.subtotal, currency),
        "discounts": [{"discount": d.discount.id, "description": d.discount.label(currency),
                       "meter": d.discount.meter, "amount": format_amount(d.amount, currency)} for d in discounts],
        "discount_total": format_amount(discount_total, currency),
        "taxes": tax_docs(taxes, currency), "tax_total": format_amount(tax_total, currency),
        "tax_inclusive": tax_inclusive,
        "total": format_amount(total, currency),
        "credits": [{"grant": g.id, "description": g.reason or "prepaid credit",
                     "amount": format_amount(a, currency)} for g, a in credits],
        "credits_applied": format_amount(credit_total, currency),
        "amount_due": format_amount(total - credit_total, currency),
        "created_at": created_at,
    }


def public_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Drop storage keys from a stored invoice item."""
    view = {k: v for k, v in doc.items()
             if k not in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk")}
    view.setdefault("number", None)  # drafts have no number yet (storage omits nulls)
    if view.get("status") in ("final", "paid", "uncollectible") and "amount_due" in view:
        # one truth: the amount due (net of credit notes) less the payments recorded
        paid = Decimal(str(view.get("amount_paid") or 0))
        if view["status"] == "paid" and "amount_paid" not in view:   # marked paid by hand, no payment records
            paid = Decimal(str(view["amount_due"]))
        view["amount_paid"] = format_amount(paid, view["currency"])
        view["balance_due"] = format_amount(balance_due(Decimal(str(view["amount_due"])), paid), view["currency"])
    return view


# Lifecycle after finalization: action -> (statuses it may start from, status it leads to).
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "mark-paid": (frozenset({"final", "uncollectible"}), "paid"),
    "void": (frozenset({"final", "uncollectible"}), "void"),
    "mark-uncollectible": (frozenset({"final"}), "uncollectible"),
}
