"""Reconciliation: what was used, aggregated, invoiced, paid and synced must agree (pure;
docs/decisions.md, "Audit and reconciliation").

Each comparison takes figures the service read (raw-event recounts, stored buckets, invoice
documents, the invoice re-rated by the rating code itself, payment evidence, sync records) and
returns :class:`Finding` s naming what to investigate. Nothing here prices, reads or writes.

Severity: ``error`` — money or usage disagrees; ``warning`` — not (yet) where it should be
(a sync still pending, a payment not applied); ``info`` — an *expected* difference, listed for
the auditor but not drift (late usage marked for re-rating). A run is clean when it has no
error or warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from meterbill.domain.instants import from_ms, iso
from meterbill.domain.meters import BucketState

KINDS = ("raw_vs_aggregate", "aggregate_vs_invoice", "invoice_arithmetic", "invoice_vs_payment", "sync_drift")
SEVERITIES = ("error", "warning", "info")
EVENT_SAMPLE = 5          # event ids named per bucket
ZERO = Decimal(0)
CellKey = tuple[int, str]  # (quarter-hour start epoch s, dimension group key)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str                     # one of KINDS
    severity: str                 # one of SEVERITIES
    problem: str                  # what exactly, e.g. events_not_aggregated, line_differs, paid_without_payment
    message: str
    customer: str
    expected: str | None = None
    found: str | None = None
    period: str | None = None     # "<start>/<end>"
    meter: str | None = None
    bucket: str | None = None     # the quarter-hour's start
    hour_key: str | None = None   # the usage item's sort key: "<hour start>|<meter>#<group>"
    invoice: str | None = None
    line: int | None = None
    events: tuple[str, ...] = ()  # a sample of the raw event ids behind the bucket
    payment: str | None = None
    integration: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if v is not None and v != ()}


def is_drift(finding: Finding) -> bool:
    return finding.severity != "info"


# -- raw events against stored aggregates ------------------------------------------------------
@dataclass(slots=True)
class Recount:
    """One bucket recounted from raw events: those accepted before the cutoff, those including the
    ones accepted since (aggregation may or may not have applied them yet), a sample of ids."""

    before: BucketState = field(default_factory=BucketState)
    including_later: BucketState = field(default_factory=BucketState)
    events: list[str] = field(default_factory=list)


def figures(state: BucketState) -> str:
    parts = [f"count {state.count}", f"sum {format(state.sum, 'f')}"]
    for name in ("max", "min"):
        value = getattr(state, name)
        if value is not None:
            parts.append(f"{name} {format(value, 'f')}")
    if state.latest is not None:
        parts.append(f"latest {format(state.latest[2], 'f')} ({state.latest[1]})")
    if state.uniques:
        parts.append(f"unique {len(state.uniques)}")
    return ", ".join(parts)


def same_state(a: BucketState, b: BucketState) -> bool:
    return (a.count, a.sum, a.max, a.min, a.latest, a.uniques, {k: v for k, v in a.values.items() if v}) == \
        (b.count, b.sum, b.max, b.min, b.latest, b.uniques, {k: v for k, v in b.values.items() if v})


def compare_usage(customer: str, meter: str, recounted: Mapping[CellKey, Recount],
                  stored: Mapping[CellKey, BucketState], period: str | None = None) -> list[Finding]:
    """Every quarter-hour whose stored state matches neither recount: a bucket edited, an event
    not aggregated, one counted twice, usage with no raw event behind it."""
    out = []
    for start_s, group in sorted(set(recounted) | set(stored)):
        raw = recounted.get((start_s, group), Recount())
        have = stored.get((start_s, group), BucketState())
        if same_state(have, raw.before) or same_state(have, raw.including_later):
            continue
        if have.count < raw.before.count:
            problem = "events_not_aggregated"
        elif have.count > raw.including_later.count:
            problem = "usage_without_raw_events" if not raw.including_later.count else "counted_twice"
        else:
            problem = "bucket_differs"
        hour = start_s - start_s % 3600
        out.append(Finding("raw_vs_aggregate", "error", problem,
                           f"meter {meter}, quarter-hour {iso(from_ms(start_s * 1000))}"
                           + (f", group {group!r}" if group else "") + ": the stored bucket is not what its raw "
                           "events add up to", customer, figures(raw.before), figures(have), period, meter,
                           iso(from_ms(start_s * 1000)), f"{hour:012d}|{meter}#{group}",
                           events=tuple(raw.events[:EVENT_SAMPLE])))
    return out


# -- stored aggregates against invoiced lines --------------------------------------------------
@dataclass(frozen=True, slots=True)
class LineFigures:
    """A rated line as compared: what it is and what it bills."""

    kind: str
    meter: str | None
    description: str
    quantity: Decimal | None
    amount: Decimal

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.meter, self.description)


NOT_RATED = frozenset({"adjustment", "progressive"})   # lines the rating of the period itself does not make


def billed_lines(invoice: Mapping[str, Any]) -> list[tuple[int | None, LineFigures]]:
    """What the invoice bills for its own period, with each line's index: as re-rated for late
    usage (``rerated_lines``, no index: settled on later documents), else its rated lines."""
    if invoice.get("rerated_lines"):
        return [(None, _figures_of(ln)) for ln in invoice["rerated_lines"]]
    return [(i, _figures_of(ln)) for i, ln in enumerate(invoice.get("lines") or []) if ln["type"] not in NOT_RATED]


def _figures_of(line: Mapping[str, Any]) -> LineFigures:
    q = line.get("quantity")
    return LineFigures(line["type"], line.get("meter"), line["description"], None if q is None else Decimal(q),
                       Decimal(line["amount"]))


def compare_lines(invoice: Mapping[str, Any], rerated: Sequence[LineFigures], late_marked: bool) -> list[Finding]:
    """Each line whose quantity or amount differs from re-rating the stored aggregates. With a
    late-usage marker on the period the difference is expected (the next invoice settles it): info."""
    billed = billed_lines(invoice)
    have = {f.key: (i, f) for i, f in billed}
    severity, problem = ("info", "late_usage_pending") if late_marked else ("error", "line_differs")
    out = []
    for line in rerated:
        index, was = have.pop(line.key, (None, None))
        if was is not None and was.amount == line.amount and (was.quantity or ZERO) == (line.quantity or ZERO):
            continue
        out.append(_line_finding(invoice, index, line, severity,
                                 problem if was is not None else ("late_usage_pending" if late_marked else "line_missing"),
                                 _line_text(line), _line_text(was) if was else None))
    for index, was in have.values():
        out.append(_line_finding(invoice, index, was, severity,
                                 "late_usage_pending" if late_marked else "line_not_rated", None, _line_text(was)))
    return out


def _line_text(line: LineFigures) -> str:
    qty = "" if line.quantity is None else f"quantity {format(line.quantity, 'f')}, "
    return f"{qty}amount {format(line.amount, 'f')}"


def _line_finding(invoice: Mapping[str, Any], index: int | None, line: LineFigures, severity: str, problem: str,
                  expected: str | None, found: str | None) -> Finding:
    return Finding("aggregate_vs_invoice", severity, problem,
                   f"invoice {invoice.get('number') or invoice['id']}, line '{line.description}': billed differs from "
                   "re-rating the stored usage" + (" (late usage marked: the next invoice settles it)"
                                                   if severity == "info" else ""),
                   invoice["customer_id"], expected, found, _period(invoice), line.meter, invoice=invoice["id"],
                   line=index)


def _period(invoice: Mapping[str, Any]) -> str:
    return f"{invoice['period']['start']}/{invoice['period']['end']}"


# -- the invoice's own arithmetic --------------------------------------------------------------
def check_arithmetic(invoice: Mapping[str, Any]) -> list[Finding]:
    """Lines add up to the subtotal; discounts, taxes and credits to their totals; subtotal -
    discounts (+ taxes unless prices include them) = total; total - credits = amount due."""
    def total(items: Iterable[Mapping[str, Any]]) -> Decimal:
        return sum((Decimal(x["amount"]) for x in items), ZERO)

    subtotal, discounts = Decimal(invoice["subtotal"]), Decimal(invoice.get("discount_total") or 0)
    tax, credits = Decimal(invoice.get("tax_total") or 0), Decimal(invoice.get("credits_applied") or 0)
    taxable = subtotal - discounts
    checks = [("subtotal", total(invoice.get("lines") or []), subtotal, "the lines' amounts add up to"),
              ("discount_total", total(invoice.get("discounts") or []), discounts, "the discounts add up to"),
              ("tax_total", total(invoice.get("taxes") or []), tax, "the tax lines add up to"),
              ("credits_applied", total(invoice.get("credits") or []), credits, "the credits drawn add up to"),
              ("total", taxable if invoice.get("tax_inclusive") else taxable + tax, Decimal(invoice["total"]),
               "subtotal - discounts" + ("" if invoice.get("tax_inclusive") else " + tax") + " is"),
              ("amount_due", Decimal(invoice["total"]) - credits, Decimal(invoice["amount_due"]),
               "total - credits applied is")]
    return [Finding("invoice_arithmetic", "error", f"{name}_mismatch",
                    f"invoice {invoice.get('number') or invoice['id']}: {text} {format(want, 'f')}, "
                    f"the invoice says {format(got, 'f')}", invoice["customer_id"], format(want, "f"),
                    format(got, "f"), _period(invoice), invoice=invoice["id"])
            for name, want, got, text in checks if want != got]


# -- invoices against payments -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Payment:
    """Evidence that an invoice was paid: a payment record, or today the invoice's own record of
    the webhook / manual mark-paid that paid it (``amount`` None: the evidence names no amount)."""

    id: str
    invoice: str
    amount: Decimal | None
    source: str


def compare_payments(invoice: Mapping[str, Any], payments: Sequence[Payment]) -> list[Finding]:
    status, due = invoice.get("status"), Decimal(invoice["amount_due"])
    known = [p.amount for p in payments if p.amount is not None]
    paid = sum(known, ZERO)
    who = invoice.get("number") or invoice["id"]

    def finding(severity: str, problem: str, message: str, expected: str | None, found: str | None,
                payment: str | None = None) -> Finding:
        return Finding("invoice_vs_payment", severity, problem, f"invoice {who}: {message}", invoice["customer_id"],
                       expected, found, _period(invoice), invoice=invoice["id"], payment=payment,
                       integration=next((p.source for p in payments if p.id == payment), None))

    if status == "paid" and not payments:
        return [finding("error", "paid_without_payment", "marked paid, but no payment covers it",
                        f"payments of {format(due, 'f')}", "no payment")]
    out = []
    if status == "paid" and known and paid != due:
        out.append(finding("error", "amount_differs", "the payments do not add up to the amount due",
                           format(due, "f"), format(paid, "f"), payments[0].id))
    if status in ("final", "uncollectible") and payments and (not known or paid >= due):
        out.append(finding("warning", "payment_not_applied", "a payment covers it, but it is not marked paid",
                           "status paid", f"status {status}", payments[0].id))
    if status in ("draft", "finalizing", "void") and payments:
        out.append(finding("error", "payment_on_unpayable_invoice", f"a payment is recorded on a {status} invoice",
                           "no payment", f"{len(payments)} payment(s)", payments[0].id))
    return out


# -- each integration's sync state --------------------------------------------------------------
SETTLED = "synced"
IN_PROGRESS = frozenset({"pending", "in_flight", "unknown"})


def compare_sync(invoice: Mapping[str, Any], integration: str, record: Mapping[str, Any] | None) -> list[Finding]:
    """The invoice's push to one enabled integration: missing, failed or still pending is drift;
    a synced record whose external total is known must equal meterbill's."""
    who = invoice.get("number") or invoice["id"]

    def finding(severity: str, problem: str, message: str, expected: str, found: str) -> Finding:
        return Finding("sync_drift", severity, problem, f"invoice {who} in {integration}: {message}",
                       invoice["customer_id"], expected, found, _period(invoice), invoice=invoice["id"],
                       integration=integration)

    if record is None:
        return [finding("error", "not_queued", "no sync record: it was never queued for this integration",
                        SETTLED, "no record")]
    status = str(record.get("status"))
    if status == "failed":
        return [finding("error", "sync_failed", f"failed: {record.get('error') or record.get('reason') or '?'}",
                        SETTLED, "failed")]
    if status in IN_PROGRESS:
        return [finding("warning", "not_synced", f"not synced yet ({status}, {record.get('attempts', 0)} attempts)",
                        SETTLED, status)]
    external = record.get("external_total")
    if status == SETTLED and external is not None and Decimal(str(external)) != Decimal(invoice["total"]):
        return [finding("error", "external_total_differs", f"{integration}'s total differs from meterbill's",
                        invoice["total"], format(Decimal(str(external)), "f"))]
    return []


def summary(findings: Sequence[Finding]) -> dict[str, Any]:
    by_kind = {k: sum(1 for f in findings if f.kind == k and is_drift(f)) for k in KINDS}
    drift = sum(by_kind.values())
    return {"clean": drift == 0, "drift": drift, "expected_differences": len(findings) - drift, "by_kind": by_kind}
