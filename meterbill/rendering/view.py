"""The invoice as it is shown: one presentation model shared by the HTML and PDF renderers.

Input is the stored invoice document (``meterbill.domain.invoices.build_invoice``, as served by
the API: amounts are decimal strings). Money is shown exactly as stored — never parsed into a
float, never re-rounded: line amounts and totals verbatim; the unrounded tier amounts without
insignificant trailing zeros ('1350.000000' -> '1350.00'). Quantities get thousands separators
(a string operation). A line's breakdown is its ``tiers`` (a tier with a ``rate``, from ``graduated_percentage``,
shows it as a percent: "50 × 2%") and its ``parts`` (matrix cells,
time-of-use windows…: ``label``, ``units``, ``unit_amount``, ``amount``).
Optional fields are rendered when present: ``taxes`` (``name``,
``rate`` as a fraction such as ``"0.19"`` or ``percentage`` such as ``"19"``, ``amount``,
``note``), ``discounts`` (taken off before tax), ``credits`` (prepaid credit drawn),
``credited_to_invoice_total`` (what credit notes issued later took off the amount due), ``amount_due`` (the figure to pay),
``payment_url`` (https only), ``notes``, ``timezone`` (dates are shown in it,
else in the customer's, else UTC), per line ``unit`` (after the quantity: "12,500 tokens"),
``free_units`` (a note: "first 1,000 tokens free"), ``note``, ``plan`` (shown when the
invoice's lines name more than one plan: a period split by a plan change), ``override``
("Contract price") and, for late-usage ``adjustment`` lines, ``refers_to``.

A credit note (``meterbill.domain.adjustments.build_credit_note``) becomes the same view
(``credit_note_view``): same layout and branding, its own facts and totals, nothing to pay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from meterbill.domain.money import MINOR_UNITS

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
STATUSES = {"draft": "Draft", "finalizing": "Finalizing", "final": "Final", "paid": "Paid", "void": "Void",
            "uncollectible": "Uncollectible", "issued": "Issued"}
REASONS = {"duplicate": "Duplicate charge", "fraudulent": "Fraudulent charge", "order_change": "Order change",
           "product_unsatisfactory": "Product unsatisfactory", "late_usage_adjustment": "Late usage adjustment",
           "other": "Other"}
DAY = 86_400


@dataclass(frozen=True, slots=True)
class TierRow:
    """One row of a line's breakdown: a tier, or a part (matrix cell, time-of-use window…)."""

    label: str        # "Tier 1 (0 – 1,000)", "peak (Mon-Fri 08:00-20:00)"
    units: str        # "1,000"
    unit_price: str   # "0.01"; "" when the part has no unit price
    flat: str | None  # flat fee of the tier, when it has one
    amount: str       # exact, unrounded, as stored (insignificant zeros dropped)

    @property
    def expression(self) -> str:
        price = f" × {self.unit_price}" if self.unit_price else ""
        flat = f" + {self.flat} flat" if self.flat else ""
        return f"{self.label}: {self.units}{price}{flat}"

    @property
    def text(self) -> str:
        return f"{self.expression} = {self.amount}"


@dataclass(frozen=True, slots=True)
class LineRow:
    description: str
    quantity: str            # grouped digits with the unit, "" when the line has none
    unit_price: str          # a price, "see tiers", or ""
    amount: str
    tiers: tuple[TierRow, ...]
    notes: tuple[str, ...]   # proration, a period other than the invoice's, free notes


@dataclass(frozen=True, slots=True)
class TotalRow:
    label: str
    amount: str
    kind: str = "tax"        # css class: subtotal | discount | tax | credit


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str
    strong: bool = False


@dataclass(frozen=True, slots=True)
class InvoiceView:
    id: str
    number: str | None
    title: str               # "Invoice INV-000123" / "Draft invoice" / "Credit note CN-000001"
    status: str              # css-safe key: draft | finalizing | final | paid | void | uncollectible | other
    status_label: str
    currency: str
    issued: str
    due: str
    terms: str
    period: str
    customer_name: str
    customer_email: str
    customer_lines: tuple[str, ...]
    lines: tuple[LineRow, ...]
    subtotal: str
    taxes: tuple[TotalRow, ...]
    total: str
    payable: bool            # show payment instructions (final, something left to pay)
    payment_url: str | None
    notice: str | None       # "This is a draft…", "Paid — thank you."
    notes: tuple[str, ...]
    timezone: str
    heading: str = "Invoice"                   # "Invoice" | "Credit note"
    facts: tuple[Fact, ...] = ()               # the details column, in order
    before_total: tuple[TotalRow, ...] = ()    # subtotal, discounts, taxes
    after_total: tuple[TotalRow, ...] = ()     # prepaid credits, credit notes; what a credit note went to
    amount_due: str | None = None              # the figure to pay (stored), when the document has one
    party_label: str = "Bill to"


# -- small string helpers (no float anywhere) ---------------------------------------------
def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def group_digits(value: Any) -> str:
    """'1234567.50' -> '1,234,567.50' by string surgery; anything not a plain number is returned as is."""
    s = text(value)
    sign = s[:1] if s[:1] in "+-" else ""
    whole, dot, frac = s[len(sign):].partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return s
    head = len(whole) % 3 or 3
    parts = [whole[:head]] + [whole[i:i + 3] for i in range(head, len(whole), 3)]
    return sign + ",".join(parts) + dot + frac


def trim_zeros(amount: Any, decimals: int) -> str:
    """Drop insignificant trailing zeros of an exact (unrounded) amount, keeping at least the
    currency's minor digits: '1350.000000' -> '1350.00', '374.82910' -> '374.8291', '0' -> '0.00'.
    The value is unchanged — nothing is rounded."""
    s = text(amount)
    sign = s[:1] if s[:1] in "+-" else ""
    whole, _, frac = s[len(sign):].partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return s
    frac = frac.rstrip("0").ljust(decimals, "0")
    return sign + whole + ("." + frac if frac else "")


def percent(fraction: Any, scale: int = 100) -> str | None:
    """'0.19' (scale 100) -> '19'; '0.733333…' -> '73.33'; exact Decimal arithmetic."""
    try:
        d = Decimal(text(fraction)) * scale
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    d = d.quantize(Decimal("0.01")) if d != d.to_integral_value() else d.to_integral_value()
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _instant(value: Any) -> datetime | None:
    s = text(value)
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # unknown or malformed name
        return timezone.utc


def fmt_date(dt: date) -> str:
    return f"{dt.day} {MONTHS[dt.month - 1]} {dt.year}"


def _is_midnight(dt: datetime) -> bool:
    return (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0)


def fmt_period(start: Any, end: Any, tz: Any, tz_name: str) -> str:
    """Whole days -> '1 Oct 2026 – 31 Oct 2026' (the stored end is exclusive); otherwise
    date and time in the invoice's zone."""
    s, e = _instant(start), _instant(end)
    if s is None or e is None:
        return f"{text(start)} – {text(end)}"
    s, e = s.astimezone(tz), e.astimezone(tz)
    if _is_midnight(s) and _is_midnight(e) and e > s:
        last = (e - timedelta(days=1)).date()
        return fmt_date(s) if last == s.date() else f"{fmt_date(s)} – {fmt_date(last)}"
    return f"{fmt_date(s)} {s:%H:%M} – {fmt_date(e)} {e:%H:%M} ({tz_name})"


def fmt_day(value: Any, tz: Any) -> str:
    dt = _instant(value)
    return fmt_date(dt.astimezone(tz)) if dt else text(value)


def safe_url(value: Any) -> str | None:
    """Only https links are rendered (no javascript:, data: or plain http)."""
    s = text(value)
    if s.startswith("https://") and not any(c in s for c in " \"'<>\\\n\r\t"):
        return s
    return None


# -- lines ------------------------------------------------------------------------------------
def proration_note(fraction: Any, period: Mapping[str, Any] | None) -> str | None:
    pct = percent(fraction)
    if pct is None:
        return None
    period = period or {}
    s, e = _instant(period.get("start")), _instant(period.get("end"))
    try:
        f = Decimal(text(fraction))
    except InvalidOperation:
        f = Decimal(0)
    if s is not None and e is not None and f > 0:
        part = int((e - s).total_seconds())
        full = (Decimal(part) / f).to_integral_value()
        if part % DAY == 0 and full % DAY == 0 and full > part:
            return f"Prorated {part // DAY}/{int(full) // DAY} days ({pct}%)"
    return f"Prorated {pct}% of the period"


def _tier(t: Mapping[str, Any], decimals: int) -> TierRow:
    lower, upper = group_digits(t.get("from") or "0"), t.get("up_to")
    bounds = f"{lower} – {group_digits(upper)}" if upper not in (None, "") else f"above {lower}"
    flat = trim_zeros(t.get("flat_amount"), decimals)
    try:
        has_flat = bool(flat) and Decimal(flat) != 0
    except InvalidOperation:
        has_flat = bool(flat)
    rate = text(t.get("rate"))  # graduated_percentage: a percent of the tier's amount
    return TierRow(label=f"Tier {text(t.get('tier'))} ({bounds})", units=group_digits(t.get("units")),
                   unit_price=f"{rate}%" if rate else text(t.get("unit_amount")), flat=flat if has_flat else None,
                   amount=trim_zeros(t.get("amount"), decimals))


def _part(p: Mapping[str, Any], decimals: int) -> TierRow:
    return TierRow(label=text(p.get("label")), units=group_digits(p.get("units")),
                   unit_price=text(p.get("unit_amount")), flat=None, amount=trim_zeros(p.get("amount"), decimals))


def negated(amount: Any) -> str:
    """A stored positive amount shown as taken off: '6.15' -> '-6.15' (a sign, not arithmetic)."""
    s = text(amount)
    if s.startswith("-"):
        return s[1:]
    return s if not s.strip("0.") else "-" + s


def _is_zero(amount: Any) -> bool:
    try:
        return Decimal(text(amount) or "0") == 0
    except InvalidOperation:
        return False


def _line(ln: Mapping[str, Any], invoice_period: Mapping[str, Any], tz: Any, tz_name: str,
          decimals: int, show_plan: bool = False) -> LineRow:
    tiers = tuple(_tier(t, decimals) for t in ln.get("tiers") or () if isinstance(t, Mapping))
    parts = tuple(_part(p, decimals) for p in ln.get("parts") or () if isinstance(p, Mapping))
    qty = text(ln.get("quantity"))
    unit = text(ln.get("unit"))
    quantity = f"{group_digits(qty)} {unit}".strip() if qty else ""
    unit_price = text(ln.get("unit_amount"))
    if tiers:
        unit_price = "see tiers"
    elif parts and not unit_price:
        unit_price = "see breakdown"
    tiers += parts
    notes: list[str] = []
    if text(ln.get("free_units")) not in ("", "0"):
        notes.append(f"first {group_digits(ln.get('free_units'))} {unit or 'units'} free")
    if ln.get("proration") not in (None, ""):
        note = proration_note(ln.get("proration"), ln.get("period") or invoice_period)
        if note:
            notes.append(note)
    description = text(ln.get("description")) or text(ln.get("meter")) or text(ln.get("type"))
    lp = ln.get("period") if isinstance(ln.get("period"), Mapping) else {}
    shown = fmt_period(lp.get("start"), lp.get("end"), tz, tz_name) if lp else ""
    refers = ln.get("refers_to")
    if ln.get("type") == "adjustment" and isinstance(refers, Mapping) and text(refers.get("number")):
        # late usage for an earlier invoice: the period in the description, not again as a note
        description = f"Late usage for invoice {text(refers.get('number'))}" + (f" ({shown})" if shown else "")
    else:
        where = [] if not lp or (lp.get("start"), lp.get("end")) == (invoice_period.get("start"),
                                                                     invoice_period.get("end")) else ["Period " + shown]
        if show_plan and text(ln.get("plan")):
            where.append(f"plan {text(ln.get('plan'))}" if where else f"Plan {text(ln.get('plan'))}")
        if where:
            notes.append(" · ".join(where))
    if ln.get("override") is True:
        notes.append("Contract price")
    if text(ln.get("note")):
        notes.append(text(ln.get("note")))
    return LineRow(description=description, quantity=quantity, unit_price=unit_price, amount=text(ln.get("amount")),
                   tiers=tiers, notes=tuple(notes))


def _tax(t: Mapping[str, Any]) -> TotalRow:
    name = text(t.get("name")) or "Tax"
    pct = None
    if t.get("percentage") not in (None, ""):
        pct = percent(t.get("percentage"), scale=1)
    elif t.get("rate") not in (None, ""):
        pct = percent(t.get("rate"))
    label = f"{name} ({pct}%)" if pct is not None else name
    return TotalRow(label=label, amount=text(t.get("amount")))


def _address(addr: Any) -> tuple[str, ...]:
    if isinstance(addr, str):
        return tuple(x.strip() for x in addr.splitlines() if x.strip())
    if not isinstance(addr, Mapping):
        return ()
    city = " ".join(p for p in (text(addr.get("postal_code")), text(addr.get("city"))) if p)
    region = ", ".join(p for p in (city, text(addr.get("state"))) if p)
    return tuple(p for p in (text(addr.get("line1")), text(addr.get("line2")), region,
                             text(addr.get("country"))) if p)


def _notes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, Sequence):
        return tuple(text(v) for v in value if text(v))
    return ()


def _zone_of(doc: Mapping[str, Any]) -> tuple[Any, str]:
    customer = doc.get("customer") or {}
    tz_name = text(doc.get("timezone")) or text(customer.get("timezone")) or "UTC"
    tz = _zone(tz_name)
    return tz, "UTC" if tz is timezone.utc else tz_name


def _mappings(value: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(v for v in value or () if isinstance(v, Mapping))


def invoice_view(doc: Mapping[str, Any]) -> InvoiceView:
    customer = doc.get("customer") or {}
    tz, tz_name = _zone_of(doc)
    period = doc.get("period") or {}
    status = text(doc.get("status")).lower() or "draft"
    number = text(doc.get("number")) or None
    currency = text(doc.get("currency"))
    terms_days = text(doc.get("payment_terms_days"))
    terms = ("Due on receipt" if terms_days == "0" else f"Net {terms_days}") if terms_days else ""
    credits = [TotalRow(f"Credit applied: {text(c.get('description')) or 'prepaid credit'}",
                        negated(c.get("amount")), "credit") for c in _mappings(doc.get("credits"))]
    # what credit notes took off this invoice's amount due (any excess went to the credit balance)
    credited = doc.get("credited_to_invoice_total", doc.get("credited_total"))
    if not _is_zero(credited):
        credits.append(TotalRow("Credit notes", negated(credited), "credit"))
    due = text(doc.get("amount_due")) or None
    settled = status == "final" and due is not None and _is_zero(due) and bool(credits)
    notice = {"draft": "Draft — amounts may still change; this is not a request for payment.",
              "paid": "Paid — thank you.", "void": "Void — this invoice is cancelled and not payable.",
              "uncollectible": "Marked uncollectible."}.get(status)
    if settled:
        notice = "Nothing to pay — the total is covered by credits."
    taxes = tuple(_tax(t) for t in _mappings(doc.get("taxes")))
    notes = _notes(doc.get("notes")) + tuple(text(t.get("note")) for t in _mappings(doc.get("taxes"))
                                             if text(t.get("note")))
    issued, due_day = fmt_day(doc.get("issued_at"), tz), fmt_day(doc.get("due_at"), tz)
    shown_period = fmt_period(period.get("start"), period.get("end"), tz, tz_name)
    facts = [Fact("Invoice number", number or ("— (being numbered)" if status == "finalizing" else "— (draft)"), True), Fact("Issue date", issued),
             Fact("Due date", due_day, True)] + ([Fact("Payment terms", terms)] if terms else []) + [
             Fact("Billing period", shown_period), Fact("Currency", currency)]
    discounts = tuple(TotalRow(text(d.get("description")) or "Discount", negated(d.get("amount")), "discount")
                      for d in _mappings(doc.get("discounts")))
    lines = doc.get("lines") or ()
    split = len({text(ln.get("plan")) for ln in lines if text(ln.get("plan"))}) > 1
    return InvoiceView(
        id=text(doc.get("id")), number=number,
        title=f"Invoice {number}" if number else "Draft invoice",
        status=status if status in STATUSES else "other",
        status_label=STATUSES.get(status, status.capitalize()),
        currency=currency, issued=issued, due=due_day, terms=terms, period=shown_period,
        customer_name=text(customer.get("name")), customer_email=text(customer.get("email")),
        customer_lines=_address(customer.get("address")),
        lines=tuple(_line(ln, period, tz, tz_name, MINOR_UNITS.get(currency, 2), split) for ln in lines),
        subtotal=text(doc.get("subtotal")), taxes=taxes, total=text(doc.get("total")),
        payable=status == "final" and not (due is not None and _is_zero(due)),
        payment_url=safe_url(doc.get("payment_url")),
        notice=notice, notes=notes, timezone=tz_name, facts=tuple(facts),
        before_total=(TotalRow("Subtotal", text(doc.get("subtotal")), "subtotal"), *discounts, *taxes),
        after_total=tuple(credits), amount_due=due,
    )


def _credit_line(ln: Mapping[str, Any]) -> LineRow:
    """A credited invoice line ({line, description, amount}) or a late-usage difference
    ({label, units, amount})."""
    return LineRow(description=text(ln.get("description")) or text(ln.get("label")),
                   quantity=group_digits(ln.get("units")), unit_price="", amount=text(ln.get("amount")),
                   tiers=(), notes=(f"Invoice line {ln['line'] + 1}",) if type(ln.get("line")) is int else ())


def credit_note_view(doc: Mapping[str, Any]) -> InvoiceView:
    customer = doc.get("customer") or {}
    tz, tz_name = _zone_of(doc)
    number = text(doc.get("number")) or None
    invoice = text(doc.get("invoice_number")) or text(doc.get("invoice_id"))
    currency = text(doc.get("currency"))
    status = text(doc.get("status")).lower() or "issued"
    reason = text(doc.get("reason"))
    issued = fmt_day(doc.get("created_at"), tz)
    lines = tuple(_credit_line(ln) for ln in _mappings(doc.get("lines")))
    if not lines:  # credited as an amount: one line naming the invoice
        lines = (LineRow(f"Credit against invoice {invoice}", "", "", text(doc.get("subtotal")), (), ()),)
    taxes = tuple(_tax(t) for t in _mappings(doc.get("taxes")))
    after = [TotalRow(f"Credited to invoice {invoice}", text(doc.get("credited_to_invoice")), "credit")]
    if not _is_zero(doc.get("credited_to_balance")):
        after.append(TotalRow("Added to the customer's credit balance", text(doc.get("credited_to_balance")),
                              "credit"))
    facts = (Fact("Credit note number", number or "—", True), Fact("Credits invoice", invoice, True),
             Fact("Issue date", issued), Fact("Reason", REASONS.get(reason, reason.replace("_", " ").capitalize())),
             Fact("Currency", currency))
    return InvoiceView(
        id=text(doc.get("id")), number=number, title=f"Credit note {number}" if number else "Credit note",
        status=status if status in STATUSES else "other", status_label=STATUSES.get(status, status.capitalize()),
        currency=currency, issued=issued, due="", terms="", period="",
        customer_name=text(customer.get("name")), customer_email=text(customer.get("email")),
        customer_lines=_address(customer.get("address")), lines=lines,
        subtotal=text(doc.get("subtotal")), taxes=taxes, total=text(doc.get("total")),
        payable=False, payment_url=None, notice=None, notes=_notes(doc.get("memo")), timezone=tz_name,
        heading="Credit note", facts=facts,
        before_total=(TotalRow("Subtotal", text(doc.get("subtotal")), "subtotal"), *taxes),
        after_total=tuple(after), party_label="Customer",
    )
