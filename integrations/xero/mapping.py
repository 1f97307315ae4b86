"""A meterbill invoice document as Xero ``ACCREC`` line items (pure).

One source of truth for every amount: meterbill. Each invoice line becomes one Xero line with the
account code and tax type the deployment maps to its meter (``account_codes``); discounts and
prepaid credits drawn become negative lines. Xero recomputes tax per line and rounds each line,
so meterbill's invoice-level tax is *spread* over the taxable lines and sent as each line's
``TaxAmount``: the shares add up to meterbill's tax total exactly, the residual minor unit(s) on
the largest line (``spread``). Unit prices go with 4 decimals (``unitdp=4``) only when quantity ×
unit price gives the line's amount exactly; otherwise the line is sent as 1 × its amount, the
quantity named in the description (``price``), so Xero's line amount is always meterbill's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from meterbill.domain.money import minor_units
from meterbill.integration.contract import Problem

UNIT_DP = 4                                   # Xero's unitdp=4: unit prices with 4 decimals
QUANTITY_DP = 4                               # Xero keeps 4 decimals of a quantity
FALLBACK = "*"                                # mapping key used when nothing more specific is mapped
KINDS = ("@discount", "@credit", "@credit_note")   # non-meter keys; lines without a meter use "@<type>"
MAX_DESCRIPTION = 4000


@dataclass(frozen=True, slots=True)
class Account:
    """Where a line is booked: a revenue account code and a Xero tax type (e.g. ``OUTPUT2``)."""

    code: str
    tax_type: str


@dataclass(frozen=True, slots=True)
class Line:
    key: str                                  # stable per invoice: L<i>, D<i>, C<i>
    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Decimal                           # quantity × unit_amount, exactly meterbill's
    account: Account
    tax_amount: Decimal


def parse_accounts(text: str | None) -> tuple[dict[str, Account], list[Problem]]:
    """``METERBILL_XERO_ACCOUNT_CODES``: a JSON object ``{"<meter>" | "@<line type>" | "@discount" |
    "@credit" | "@credit_note" | "*": {"account_code": "200", "tax_type": "OUTPUT2"}}``."""
    if not text:
        return {}, [Problem("account_codes", "is required: JSON mapping each meter to "
                                             '{"account_code": ..., "tax_type": ...}')]
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return {}, [Problem("account_codes", f"is not JSON: {exc}")]
    if not isinstance(raw, dict) or not raw:
        return {}, [Problem("account_codes", "must be a non-empty JSON object keyed by meter")]
    found: dict[str, Account] = {}
    problems: list[Problem] = []
    for key, value in raw.items():
        code = value.get("account_code") if isinstance(value, dict) else None
        tax = value.get("tax_type") if isinstance(value, dict) else None
        if not isinstance(code, str) or not code.strip() or not isinstance(tax, str) or not tax.strip():
            problems.append(Problem(f"account_codes.{key}", 'needs "account_code" and "tax_type" (non-empty strings)'))
            continue
        found[key] = Account(code.strip(), tax.strip())
    return found, problems


def account_for(accounts: Mapping[str, Account], key: str) -> Account | None:
    return accounts.get(key) or accounts.get(FALLBACK)


def line_key(line: Mapping[str, Any]) -> str:
    """The mapping key of an invoice line: its meter, else ``@<type>`` (``@fixed``, ``@minimum``…)."""
    return str(line["meter"]) if line.get("meter") else f"@{line.get('type') or 'line'}"


def spread(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """``total`` split over ``weights`` in proportion, each share rounded to the currency's minor
    unit (ISO 4217: JPY 0, USD 2, KWD 3 decimals), the shares adding up to ``total`` exactly: the
    residual goes to the line with the largest weight (the first of equals). No weight (or all
    zero) puts everything on the first line; no line at all with a non-zero total is an error."""
    quantum = Decimal(1).scaleb(-minor_units(currency))
    if not weights:
        if total:
            raise ValueError(f"{total} {currency} of tax and no line to carry it")
        return []
    base = sum(weights, Decimal(0))
    if not base:
        return [total] + [Decimal(0).quantize(quantum)] * (len(weights) - 1)
    shares = [(total * w / base).quantize(quantum, ROUND_HALF_UP) for w in weights]
    residual = total - sum(shares, Decimal(0))
    biggest = max(range(len(weights)), key=lambda i: (abs(weights[i]), -i))
    shares[biggest] += residual
    return shares


def price(amount: Decimal, quantity: Decimal | None) -> tuple[Decimal, Decimal]:
    """(quantity, unit amount) Xero multiplies back to exactly ``amount``: the real quantity with a
    4-decimal unit price when that is exact, else 1 × ``amount``."""
    if quantity is not None and quantity > 0 and quantity == quantity.quantize(Decimal(1).scaleb(-QUANTITY_DP)):
        unit = (amount / quantity).quantize(Decimal(1).scaleb(-UNIT_DP), ROUND_HALF_UP)
        if unit * quantity == amount:
            return quantity, unit
    return Decimal(1), amount


def _qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


def describe(line: Mapping[str, Any], quantity: Decimal | None, unit_price_sent: bool) -> str:
    """``API calls · 12500 calls · 2026-10-01 to 2026-11-01`` (meter, quantity, period)."""
    parts = [str(line.get("description") or line.get("type") or "line")]
    if line.get("meter") is not None and quantity is not None and not unit_price_sent:
        parts.append(f"{_qty(quantity)} {line.get('unit') or line['meter']}")
    p = line.get("period")
    if p:
        parts.append(f"{p['start'][:10]} to {p['end'][:10]}")
    return " · ".join(parts)[:MAX_DESCRIPTION]


def lines(invoice: Mapping[str, Any], accounts: Mapping[str, Account]) -> list[Line]:
    """Every Xero line of ``invoice`` (raises KeyError naming the unmapped key: call
    ``problems`` first). Lines add up to ``total − credits_applied``; their tax amounts to
    ``tax_total``."""
    currency = invoice["currency"]
    out: list[tuple[str, str, Decimal, Decimal, Decimal, Account, bool]] = []
    for i, ln in enumerate(invoice.get("lines") or []):
        amount = Decimal(ln["amount"])
        qty = Decimal(ln["quantity"]) if ln.get("quantity") is not None else None
        quantity, unit = price(amount, qty)
        out.append((f"L{i}", describe(ln, qty, qty is not None and quantity == qty), quantity, unit, amount,
                    _mapped(accounts, line_key(ln)), True))
    for i, d in enumerate(invoice.get("discounts") or []):
        amount = -Decimal(d["amount"])
        out.append((f"D{i}", f"Discount: {d.get('description') or ''}", Decimal(1), amount, amount,
                    _mapped(accounts, "@discount"), True))
    for i, c in enumerate(invoice.get("credits") or []):
        amount = -Decimal(c["amount"])
        out.append((f"C{i}", f"Prepaid credit applied: {c.get('description') or ''}", Decimal(1), amount, amount,
                    _mapped(accounts, "@credit"), False))       # drawn after tax: carries no tax
    taxed = [i for i, row in enumerate(out) if row[6]]
    shares = spread(Decimal(invoice.get("tax_total") or "0"), [out[i][4] for i in taxed], currency)
    tax = dict(zip(taxed, shares))
    zero = Decimal(0).quantize(Decimal(1).scaleb(-minor_units(currency)))
    return [Line(k, d, q, u, a, acc, tax.get(i, zero)) for i, (k, d, q, u, a, acc, _) in enumerate(out)]


def _mapped(accounts: Mapping[str, Account], key: str) -> Account:
    found = account_for(accounts, key)
    if found is None:
        raise KeyError(key)
    return found


def problems(invoice: Mapping[str, Any], accounts: Mapping[str, Account]) -> list[Problem]:
    """Why ``invoice`` cannot become a Xero invoice, each naming the field."""
    if invoice.get("status") == "draft" or not invoice.get("number"):
        return [Problem("status", "only final (numbered) invoices go to Xero")]
    if len(str(invoice["number"])) > 255:
        return [Problem("number", "Xero invoice numbers have at most 255 characters")]
    currency = invoice.get("currency")
    try:
        minor_units(str(currency))
    except ValueError as exc:
        return [Problem("currency", str(exc))]
    found: list[Problem] = []
    for i, ln in enumerate(invoice.get("lines") or []):
        if account_for(accounts, line_key(ln)) is None:
            found.append(Problem(f"lines[{i}].meter", f"no Xero account code mapped for {line_key(ln)!r} "
                                                      "(METERBILL_XERO_ACCOUNT_CODES)"))
    for name, key in (("discounts", "@discount"), ("credits", "@credit")):
        if invoice.get(name) and account_for(accounts, key) is None:
            found.append(Problem(name, f"no Xero account code mapped for {key!r} (METERBILL_XERO_ACCOUNT_CODES)"))
    if Decimal(invoice.get("tax_total") or "0") and not [ln for ln in invoice.get("lines") or []]:
        found.append(Problem("tax_total", "tax with no line to carry it"))
    return found


def expected_total(invoice: Mapping[str, Any]) -> Decimal:
    """What the Xero invoice must total: meterbill's total less prepaid credits drawn."""
    return Decimal(invoice["total"]) - Decimal(invoice.get("credits_applied") or "0")
