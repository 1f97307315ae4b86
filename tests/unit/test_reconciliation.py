"""The pure comparisons of reconciliation (domain/reconciliation.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meterbill.domain.meters import BucketState
from meterbill.domain.reconciliation import (LineFigures, Payment, Recount, check_arithmetic, compare_lines,
                                             compare_payments, compare_sync, compare_usage, summary)


def invoice(**changes: Any) -> dict[str, Any]:
    doc = {"id": "in_1", "number": "T-000001", "customer_id": "acme", "status": "final",
           "period": {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"},
           "lines": [{"type": "base_fee", "description": "Pro", "amount": "49.00"},
                     {"type": "usage", "meter": "tokens", "description": "Tokens", "quantity": "1200", "amount": "11.00"}],
           "subtotal": "60.00", "discounts": [{"amount": "6.00"}], "discount_total": "6.00",
           "taxes": [{"amount": "10.80"}], "tax_total": "10.80", "tax_inclusive": False, "total": "64.80",
           "credits": [{"amount": "4.80"}], "credits_applied": "4.80", "amount_due": "60.00"}
    return {**doc, **changes}


RATED = [LineFigures("base_fee", None, "Pro", None, Decimal("49.00")),
         LineFigures("usage", "tokens", "Tokens", Decimal(1200), Decimal("11.00"))]


def state(count: int, total: str) -> BucketState:
    return BucketState(count=count, sum=Decimal(total))


def test_a_consistent_invoice_has_no_findings() -> None:
    inv = invoice()
    assert check_arithmetic(inv) == [] and compare_lines(inv, RATED, False) == []
    assert compare_payments(inv, []) == [] and compare_sync(inv, "stripe", {"status": "synced"}) == []
    assert summary([]) == {"clean": True, "drift": 0, "expected_differences": 0,
                           "by_kind": {k: 0 for k in ("raw_vs_aggregate", "aggregate_vs_invoice", "invoice_arithmetic",
                                                      "invoice_vs_payment", "sync_drift")}}


def test_arithmetic_names_each_total_that_does_not_add_up() -> None:
    found = check_arithmetic(invoice(tax_total="10.00", total="64.00", amount_due="59.20"))
    assert [(f.problem, f.expected, f.found) for f in found] == [("tax_total_mismatch", "10.80", "10.00")]
    # (total and amount due follow the stated tax: each mismatch is named once, where it starts)
    inclusive = invoice(tax_inclusive=True, total="54.00", credits_applied="0", credits=[], amount_due="54.00")
    assert check_arithmetic(inclusive) == []


def test_a_line_differing_from_the_re_rating_is_drift_unless_late_usage_is_marked() -> None:
    rated = [RATED[0], LineFigures("usage", "tokens", "Tokens", Decimal(1300), Decimal("11.50"))]
    (drift,) = compare_lines(invoice(), rated, False)
    assert (drift.severity, drift.problem, drift.line, drift.meter, drift.expected, drift.found) == \
        ("error", "line_differs", 1, "tokens", "quantity 1300, amount 11.50", "quantity 1200, amount 11.00")
    (note,) = compare_lines(invoice(), rated, True)
    assert (note.severity, note.problem) == ("info", "late_usage_pending")
    assert summary([drift, note])["drift"] == 1 and summary([note])["clean"] is True
    # settled late usage: the invoice's re-rated lines are what was billed for the period
    settled = invoice(rerated_lines=[{"type": "base_fee", "description": "Pro", "amount": "49.00"},
                                     {"type": "usage", "meter": "tokens", "description": "Tokens", "quantity": "1300",
                                      "amount": "11.50"}])
    assert compare_lines(settled, rated, False) == []


def test_payments_against_the_invoice_status() -> None:
    assert [f.problem for f in compare_payments(invoice(status="paid"), [])] == ["paid_without_payment"]
    paid = Payment("pi_1", "in_1", Decimal("60.00"), "stripe")
    assert compare_payments(invoice(status="paid"), [paid]) == []
    short = Payment("pi_1", "in_1", Decimal("50.00"), "stripe")
    (f,) = compare_payments(invoice(status="paid"), [short])
    assert (f.problem, f.expected, f.found, f.payment, f.integration) == ("amount_differs", "60.00", "50.00", "pi_1",
                                                                           "stripe")
    assert [f.problem for f in compare_payments(invoice(), [paid])] == ["payment_not_applied"]
    assert [f.problem for f in compare_payments(invoice(status="void"), [paid])] == ["payment_on_unpayable_invoice"]


def test_sync_states() -> None:
    inv = invoice()
    assert [f.problem for f in compare_sync(inv, "xero", None)] == ["not_queued"]
    assert [(f.problem, f.severity) for f in compare_sync(inv, "xero", {"status": "unknown"})] == [("not_synced", "warning")]
    assert [f.problem for f in compare_sync(inv, "xero", {"status": "failed", "error": "no account code"})] == ["sync_failed"]
    assert [f.problem for f in compare_sync(inv, "xero", {"status": "synced", "external_total": "64.00"})] == \
        ["external_total_differs"]


def test_usage_buckets_against_their_recount() -> None:
    q = 1791626400
    recount = {(q, ""): Recount(state(2, "1200"), state(3, "1250"), ["a1", "a2", "a3"])}
    assert compare_usage("acme", "tokens", recount, {(q, ""): state(2, "1200")}) == []   # before the cutoff
    assert compare_usage("acme", "tokens", recount, {(q, ""): state(3, "1250")}) == []   # with the later one
    (edited,) = compare_usage("acme", "tokens", recount, {(q, ""): state(2, "1300")})
    assert (edited.problem, edited.bucket, edited.hour_key, edited.events) == \
        ("bucket_differs", "2026-10-10T10:00:00Z", f"{q:012d}|tokens#", ("a1", "a2", "a3"))
    assert compare_usage("acme", "tokens", recount, {})[0].problem == "events_not_aggregated"
    assert compare_usage("acme", "tokens", recount, {(q, ""): state(4, "1300")})[0].problem == "counted_twice"
    assert compare_usage("acme", "tokens", {}, {(q, "g"): state(1, "5")})[0].problem == "usage_without_raw_events"
