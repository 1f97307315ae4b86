"""Discounts, prepaid credits and credit notes (pure): examples worked by hand + properties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbill.domain.adjustments import (Discount, Grant, apply_discounts, balance, build_credit_note,
                                          draw_credits, parse_discount, parse_grant)
from meterbill.domain.errors import InvalidField
from meterbill.domain.invoices import build_invoice
from meterbill.domain.periods import Period
from meterbill.domain.rating import Line, Rated
from meterbill.domain.taxes import TaxParty, TaxRate, tax_lines

UTC = timezone.utc
NOW = datetime(2026, 11, 5, tzinfo=UTC)
D = Decimal


def pct(value: str, **kw: object) -> Discount:
    return Discount("p", "percentage", D(value), kw.pop("duration", "forever"), **kw)  # type: ignore[arg-type]


def fixed(value: str, **kw: object) -> Discount:
    return Discount("f", "fixed", D(value), kw.pop("duration", "once"), **kw)  # type: ignore[arg-type]


def test_percentage_then_fixed_on_one_meter() -> None:
    lines = [(None, D("49.00")), ("tokens", D("12.50")), ("calls", D("0.01"))]
    got = apply_discounts(lines, [pct("10"), fixed("20.00", meter="tokens")], "USD")
    # 10 % of 61.51 = 6.151 -> 6.15; the fixed 20.00 is capped at the tokens line, 12.50
    assert [(g.amount, g.base) for g in got] == [(D("6.15"), D("61.51")), (D("12.50"), D("12.50"))]
    assert got[1].after("USD", "P1") == {"applied": 1, "remaining": "7.50", "last_period": "P1"}  # carried forward


def test_discount_lifetimes() -> None:
    assert not pct("10", duration="once", applied=1).active
    assert pct("10", duration="repeating", periods=3, applied=2).active
    assert not pct("10", duration="repeating", periods=3, applied=3).active
    assert pct("10", duration="forever", applied=500).active
    assert fixed("5", remaining=D("0.01"), applied=4).active and not fixed("5", remaining=D("0"), applied=1).active


def test_percentage_rounding_follows_the_plan() -> None:
    lines = [(None, D("0.25"))]  # 50 % = 0.125
    assert apply_discounts(lines, [pct("50")], "USD")[0].amount == D("0.13")
    assert apply_discounts(lines, [pct("50")], "USD", "ROUND_HALF_EVEN")[0].amount == D("0.12")


@pytest.mark.parametrize(("raw", "field"), [
    ({"type": "percent"}, "type"), ({"type": "percentage", "percentage": "0"}, "percentage"),
    ({"type": "fixed", "amount": "-1"}, "amount"), ({"type": "fixed", "amount": "1", "duration": "monthly"}, "duration"),
    ({"type": "fixed", "amount": "1", "duration": "repeating"}, "periods"),
    ({"type": "fixed", "amount": "1", "periods": 2}, "periods"), ({"type": "fixed", "amount": "1", "meter": ""}, "meter"),
])
def test_bad_discounts_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as exc:
        parse_discount("d", raw)
    assert exc.value.field == field


def grant(gid: str, remaining: str, expires: int | None = None, age: int = 0) -> Grant:
    return Grant(gid, D(remaining), D(remaining), NOW - timedelta(days=age),
                 None if expires is None else NOW + timedelta(days=expires))


def test_credits_drawn_soonest_expiry_first_then_oldest_and_expired_never() -> None:
    grants = [grant("forever-old", "50", age=9), grant("late", "10", expires=30), grant("soon", "5", expires=2),
              grant("gone", "100", expires=-1), grant("forever-new", "50", age=1)]
    drawn = draw_credits(D("70"), grants, NOW)
    assert [(g.id, a) for g, a in drawn] == [("soon", D("5")), ("late", D("10")), ("forever-old", D("50")),
                                             ("forever-new", D("5"))]
    assert balance(grants, NOW) == D("115")


def test_grant_must_fit_the_currency_and_expire_in_the_future() -> None:
    with pytest.raises(InvalidField, match="decimals"):
        parse_grant("g", {"amount": "1.5"}, "JPY", NOW)
    with pytest.raises(InvalidField) as exc:
        parse_grant("g", {"amount": "1", "expires_at": "2026-11-04T00:00:00Z"}, "USD", NOW)
    assert exc.value.field == "expires_at"


INVOICE = {"id": "in_1", "number": "INV-000001", "customer_id": "c", "currency": "EUR", "status": "final",
           "total": "119.00", "amount_due": "119.00", "tax_inclusive": False,
           "taxes": [{"name": "VAT 19%", "percentage": "19", "amount": "19.00"}]}


def test_credit_note_gives_tax_back_in_proportion_and_splits_unpaid_and_balance() -> None:
    note = build_credit_note(note_id="cn", number="CN-1", invoice={**INVOICE, "amount_due": "30.00"},
                             amount=D("50.00"), reason="duplicate", memo=None, lines=[], created_at="t")
    # 50.00 + 19 % = 59.50: 30.00 still unpaid on the invoice, 29.50 to the customer's balance
    assert (note["tax_total"], note["total"], note["credited_to_invoice"], note["credited_to_balance"]) == (
        "9.50", "59.50", "30.00", "29.50")
    inclusive = build_credit_note(note_id="cn", number="CN-2", invoice={**INVOICE, "tax_inclusive": True},
                                  amount=D("11.90"), reason="other", memo=None, lines=[], created_at="t")
    assert (inclusive["tax_total"], inclusive["total"]) == ("1.90", "11.90")  # the 11.90 contains 1.90
    with pytest.raises(InvalidField, match="only 19.00 EUR"):
        build_credit_note(note_id="cn", number="CN-3", invoice={**INVOICE, "credited_total": "100.00"},
                          amount=D("20.00"), reason="other", memo=None, lines=[], created_at="t")


cents = st.integers(min_value=0, max_value=10_000_00).map(lambda c: D(c) / 100)


@given(st.lists(st.tuples(st.sampled_from([None, "a", "b"]), cents), min_size=1, max_size=6),
       st.lists(st.tuples(st.booleans(), st.integers(1, 100), cents, st.sampled_from([None, "a", "b"])), max_size=4),
       st.lists(st.tuples(cents, st.integers(-3, 30)), max_size=4),
       st.sampled_from(["0", "7", "19", "20.5"]), st.booleans())
def test_invoice_parts_always_add_up(lines: list[tuple[str | None, Decimal]], raw_discounts: list[tuple[bool, int, Decimal, str | None]],
                                     raw_grants: list[tuple[Decimal, int]], rate: str, inclusive: bool) -> None:
    discounts = [Discount(f"d{i}", "percentage" if is_pct else "fixed", D(p) if is_pct else amount or D("0.01"),
                          "forever", meter=meter) for i, (is_pct, p, amount, meter) in enumerate(raw_discounts)]
    subtotal = sum((a for _, a in lines), D(0))
    applied = apply_discounts(lines, discounts, "USD")
    assert all(0 <= d.amount <= d.base for d in applied)
    for meter in ("a", "b"):   # a discount on one meter never takes more than that meter's lines
        assert sum((d.amount for d in applied if d.discount.meter == meter), D(0)) <= \
            sum((a for m, a in lines if m == meter), D(0))
    discount_total = sum((d.amount for d in applied), D(0))
    assert discount_total <= subtotal
    taxes = tax_lines(subtotal - discount_total, "USD", [TaxRate("t", "T", D(rate), "DE")], TaxParty("DE"), None,
                      inclusive)
    grants = [grant(f"g{i}", str(a), expires=e) for i, (a, e) in enumerate(raw_grants)]
    total_before_credit = subtotal - discount_total + (D(0) if inclusive else sum((t.amount for t in taxes), D(0)))
    drawn = draw_credits(total_before_credit, grants, NOW)
    assert sum((a for _, a in drawn), D(0)) == min(total_before_credit, balance(grants, NOW))
    period = Period(NOW - timedelta(days=30), NOW, 0)
    doc = build_invoice(invoice_id="in", number="N", customer={"id": "c", "name": "C"}, plan_code="p", plan_version=1,
                        period=period, created_at="t", tax_inclusive=inclusive, taxes=taxes, discounts=applied,
                        credits=drawn, rated=Rated("USD", tuple(Line("usage", "x", a, a, meter=m) for m, a in lines),
                                                   subtotal, subtotal))
    tax = D(doc["tax_total"])
    assert D(doc["total"]) == D(doc["subtotal"]) - D(doc["discount_total"]) + (D(0) if inclusive else tax)
    assert D(doc["amount_due"]) == D(doc["total"]) - D(doc["credits_applied"]) >= 0
    assert sum((D(d["amount"]) for d in doc["discounts"]), D(0)) == D(doc["discount_total"])
    assert sum((D(c["amount"]) for c in doc["credits"]), D(0)) == D(doc["credits_applied"])


def test_creditable_before_tax_fits_with_its_tax_and_never_over() -> None:
    from meterbill.domain.adjustments import creditable_before_tax
    invoice = {**INVOICE, "credited_total": "100.00"}  # 19.00 left, tax 19 %
    best = creditable_before_tax(invoice)
    # 15.96 + 3.03 tax = 18.99 fits; 15.97 + 3.03 = 19.00 also fits; 15.98 + 3.04 = 19.02 does not
    assert best == D("15.97")
    build_credit_note(note_id="cn", number="CN-4", invoice=invoice, amount=best, reason="other", memo=None,
                      lines=[], created_at="t")
    assert creditable_before_tax({**INVOICE, "credited_total": "119.00"}) == 0


@given(st.lists(cents, min_size=1, max_size=5), st.sampled_from(["once", "repeating", "forever"]))
def test_a_fixed_discount_takes_its_amount_at_most_once_per_period(invoices: list[Decimal], duration: str) -> None:
    from meterbill.domain.adjustments import discount_from_doc
    d = Discount("m", "fixed", D("25.00"), duration, periods=2 if duration == "repeating" else None)
    taken = D(0)
    for subtotal in invoices:   # the invoices of one billing period (progressive billing)
        got = apply_discounts([(None, subtotal)], [d], "USD", period="P")
        if got:
            taken += got[0].amount
            d = discount_from_doc({"id": "m", "type": "fixed", "amount": "25.00", "duration": duration,
                                   "periods": d.periods, **got[0].after("USD", "P")})
    assert taken <= D("25.00") and d.applied == 1
