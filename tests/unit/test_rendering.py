"""Invoice documents: the presentation model, HTML (escaping, exact money) and PDF (parsed back
with pypdf), branding from settings."""

from __future__ import annotations

import base64
import copy
import io
import logging
import re
import struct
import zlib
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from meterbill.config import Settings, accent_colour
from meterbill.rendering import InvoiceRenderer
from meterbill.rendering.branding import Branding, BrandingError, image_info, load_logo
from meterbill.rendering.html import render_credit_note_html, render_html
from meterbill.rendering.pdf import render_credit_note_pdf, render_pdf, runs, wrap
from meterbill.rendering.view import (
    credit_note_view,
    fmt_period,
    group_digits,
    invoice_view,
    negated,
    percent,
    proration_note,
    trim_zeros,
)


def png(width: int = 6, height: int = 3, rgb: tuple[int, int, int] = (31, 78, 121), alpha: bool = False) -> bytes:
    """A valid RGB (or RGBA: a checkerboard of opaque and clear) PNG made with zlib."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def pixel(x: int, y: int) -> bytes:
        return bytes(rgb) + (bytes([255 * ((x + y) % 2)]) if alpha else b"")

    raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))
    colour_type = 6 if alpha else 2
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, then a baseline SOF0 frame header: enough for the size sniffer."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def make_doc(**changes: Any) -> dict[str, Any]:
    """A stored invoice in the shape build_invoice makes (as served by the API)."""
    period = {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
    doc: dict[str, Any] = {
        "id": "in_0123456789abcdef0123", "number": "INV-000042", "status": "final", "customer_id": "acme",
        "customer": {"id": "acme", "name": "Acme Inc", "email": "billing@acme.example",
                     "address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345",
                                 "state": "IL", "country": "US"}},
        "plan": "pro", "plan_version": 3, "currency": "USD", "period": period,
        "issued_at": "2026-11-01T00:00:00Z", "due_at": "2026-11-15T00:00:00Z", "payment_terms_days": 14,
        "lines": [
            {"type": "base_fee", "description": "Pro base fee", "amount": "49.00",
             "amount_unrounded": "49.00", "period": period},
            {"type": "usage", "description": "LLM tokens", "amount": "6177.84", "amount_unrounded": "6177.835",
             "period": period, "meter": "llm_tokens", "quantity": "1234567", "unit": "tokens", "unit_amount": None,
             "tiers": [{"tier": 1, "from": "0", "up_to": "1000", "units": "1000", "unit_amount": "0.01",
                        "flat_amount": "0", "amount": "10.00"},
                       {"tier": 2, "from": "1000", "up_to": None, "units": "1233567", "unit_amount": "0.005",
                        "flat_amount": "2.00", "amount": "6169.835"}]},
            {"type": "usage", "description": "API calls", "amount": "42.00", "amount_unrounded": "42.000",
             "period": period, "meter": "api_calls", "quantity": "42000", "unit_amount": "0.001", "tiers": []},
        ],
        "subtotal": "6268.84", "total": "6268.84", "created_at": "2026-11-01T00:05:00Z",
    }
    doc.update(changes)
    return doc


BRAND = Branding(name="Example Cloud GmbH", address_lines=("Hauptstr. 1", "10115 Berlin", "Germany"),
                 accent="#0a7c4a", footer_lines=("Example Cloud GmbH · Amtsgericht Berlin HRB 1",),
                 bank_lines=("Bank: Example Bank", "IBAN DE89 3704 0044 0532 0130 00", "BIC COBADEFFXXX"),
                 support_email="billing@example.com")


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s)


# -- presentation helpers --------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "shown"), [("0", "0"), ("999", "999"), ("1000", "1,000"),
                                            ("1234567.125", "1,234,567.125"), ("-1234.5", "-1,234.5"),
                                            ("12", "12"), ("abc", "abc"), ("", "")])
def test_group_digits_is_string_surgery(raw: str, shown: str) -> None:
    assert group_digits(raw) == shown


@pytest.mark.parametrize(("raw", "decimals", "shown"), [
    ("1350.000000", 2, "1350.00"), ("374.82910", 2, "374.8291"), ("0", 2, "0.00"), ("2.500", 2, "2.50"),
    ("1350.000000", 0, "1350"), ("12.3450", 3, "12.345"), ("-5.10", 2, "-5.10"), ("n/a", 2, "n/a")])
def test_trim_zeros_keeps_the_value_and_the_minor_digits(raw: str, decimals: int, shown: str) -> None:
    assert trim_zeros(raw, decimals) == shown
    if shown[-1].isdigit():
        assert Decimal(shown) == Decimal(raw)


@pytest.mark.parametrize(("fraction", "shown"), [("0.19", "19"), ("0.5", "50"), ("0.07", "7"),
                                                 ("0.0725", "7.25"), ("0.7333333333333333", "73.33"),
                                                 ("1", "100"), ("x", None)])
def test_percent(fraction: str, shown: str | None) -> None:
    assert percent(fraction) == shown


def test_proration_note_shows_days_when_the_period_is_whole_days() -> None:
    period = {"start": "2026-10-10T00:00:00Z", "end": "2026-11-01T00:00:00Z"}  # 22 of 31 days
    fraction = Decimal(22 * 86400) / Decimal(31 * 86400)
    assert proration_note(format(fraction, "f"), period) == "Prorated 22/31 days (70.97%)"
    odd = {"start": "2026-10-10T06:00:00Z", "end": "2026-11-01T00:00:00Z"}
    assert proration_note("0.5", odd) == "Prorated 50% of the period"


def test_period_shows_whole_days_inclusively_and_other_spans_with_times() -> None:
    utc = timezone.utc
    assert fmt_period("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", utc, "UTC") == "1 Oct 2026 – 31 Oct 2026"
    assert fmt_period("2026-10-05T00:00:00Z", "2026-10-06T00:00:00Z", utc, "UTC") == "5 Oct 2026"
    assert fmt_period("2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z", utc, "UTC") == \
        "5 Oct 2026 10:00 – 5 Oct 2026 11:00 (UTC)"


def test_dates_follow_the_invoice_timezone_when_the_document_has_one() -> None:
    # a Tokyo month: 2026-10-01T00:00+09:00 .. 2026-11-01T00:00+09:00, stored in UTC
    doc = make_doc(period={"start": "2026-09-30T15:00:00Z", "end": "2026-10-31T15:00:00Z"},
                   issued_at="2026-10-31T15:00:00Z", due_at="2026-11-14T15:00:00Z")
    assert invoice_view(doc).period == "30 Sep 2026 15:00 – 31 Oct 2026 15:00 (UTC)"
    view = invoice_view({**doc, "timezone": "Asia/Tokyo"})
    assert (view.period, view.issued, view.due) == ("1 Oct 2026 – 31 Oct 2026", "1 Nov 2026", "15 Nov 2026")
    assert invoice_view({**doc, "timezone": "Not/AZone"}).timezone == "UTC"


def test_view_of_a_stored_invoice() -> None:
    view = invoice_view(make_doc())
    assert (view.title, view.status, view.status_label, view.terms) == \
        ("Invoice INV-000042", "final", "Final", "Net 14")
    assert (view.issued, view.due, view.period) == ("1 Nov 2026", "15 Nov 2026", "1 Oct 2026 – 31 Oct 2026")
    assert view.customer_lines == ("1 Main St", "12345 Springfield, IL", "US")
    base, tokens, calls = view.lines
    assert (base.quantity, base.unit_price, base.amount, base.tiers, base.notes) == ("", "", "49.00", (), ())
    assert (tokens.quantity, tokens.unit_price, tokens.amount) == ("1,234,567 tokens", "see tiers", "6177.84")
    assert [t.text for t in tokens.tiers] == ["Tier 1 (0 – 1,000): 1,000 × 0.01 = 10.00",
                                              "Tier 2 (above 1,000): 1,233,567 × 0.005 + 2.00 flat = 6169.835"]
    assert (calls.quantity, calls.unit_price, calls.amount) == ("42,000", "0.001", "42.00")  # no unit: no meter code
    assert view.payable and view.notice is None


def test_parts_are_a_breakdown_like_tiers() -> None:
    doc = make_doc()
    doc["lines"][2].update(unit_amount=None, parts=[
        {"label": "peak (Mon-Fri 08:00-20:00)", "units": "30000", "unit_amount": "0.0015", "amount": "45.0000"},
        {"label": "off-peak", "units": "12000", "unit_amount": "0.0005", "amount": "6.0000"},
        {"label": "minimum top-up", "units": "1", "unit_amount": None, "amount": "0"}])
    line = invoice_view(doc).lines[2]
    assert line.unit_price == "see breakdown"
    assert [t.text for t in line.tiers] == ["peak (Mon-Fri 08:00-20:00): 30,000 × 0.0015 = 45.00",
                                            "off-peak: 12,000 × 0.0005 = 6.00", "minimum top-up: 1 = 0.00"]
    html = render_html(doc, BRAND)
    assert "peak (Mon-Fri 08:00-20:00): 30,000 × 0.0015" in html and "see breakdown" in html
    assert "off-peak: 12,000 × 0.0005" in squash(pdf_text(render_pdf(doc, BRAND)))


def test_line_unit_and_a_period_other_than_the_invoice_are_shown() -> None:
    doc = make_doc()
    doc["lines"][2]["unit"] = "requests"
    doc["lines"][2]["period"] = {"start": "2026-10-15T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
    doc["lines"][2]["note"] = "Plan change on 15 Oct"
    line = invoice_view(doc).lines[2]
    assert line.quantity == "42,000 requests"
    assert line.notes == ("Period 15 Oct 2026 – 31 Oct 2026", "Plan change on 15 Oct")


def test_free_allowance_is_shown_with_the_unit_in_html_and_pdf() -> None:
    doc = make_doc()
    doc["lines"][1]["free_units"] = "1000"
    doc["lines"][2].update(quantity="12500", free_units="500")  # no unit: "units"
    tokens, calls = invoice_view(doc).lines[1:]
    assert (tokens.quantity, tokens.notes) == ("1,234,567 tokens", ("first 1,000 tokens free",))
    assert (calls.quantity, calls.notes) == ("12,500", ("first 500 units free",))
    html = render_html(doc, BRAND)
    assert "1,234,567 tokens" in html and "first 1,000 tokens free" in html and "first 500 units free" in html
    assert "llm tokens" not in html and "api calls" not in html  # meter codes are not units
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    assert "1,234,567 tokens" in text and "first 1,000 tokens free" in text and "first 500 units free" in text


@pytest.mark.parametrize(("status", "number", "title", "payable"), [
    ("draft", None, "Draft invoice", False), ("final", "INV-1", "Invoice INV-1", True),
    ("paid", "INV-1", "Invoice INV-1", False), ("void", "INV-1", "Invoice INV-1", False),
    ("uncollectible", "INV-1", "Invoice INV-1", False)])
def test_status_decides_title_badge_and_whether_payment_is_asked(status: str, number: str | None, title: str,
                                                                 payable: bool) -> None:
    view = invoice_view(make_doc(status=status, number=number))
    assert (view.title, view.status, view.payable) == (title, status, payable)
    html = render_html(make_doc(status=status, number=number), BRAND)
    assert f'class="badge {status}"' in html
    assert ("IBAN DE89" in html) is payable
    text = squash(pdf_text(render_pdf(make_doc(status=status, number=number), BRAND)))
    assert view.status_label.upper() in text
    assert ("IBAN DE89" in text) is payable


# -- HTML ---------------------------------------------------------------------------------------
def test_html_shows_everything_a_finance_team_expects() -> None:
    doc = make_doc(payment_url="https://pay.example.com/in_0123",
                   taxes=[{"name": "VAT", "rate": "0.19", "amount": "1191.08"}], total="7459.92")
    html = render_html(doc, BRAND)
    for expected in ["Example Cloud GmbH", "Hauptstr. 1", "10115 Berlin", "INV-000042", "Acme Inc",
                     "billing@acme.example", "12345 Springfield, IL", "1 Nov 2026", "15 Nov 2026", "Net 14",
                     "1 Oct 2026 – 31 Oct 2026", "Pro base fee", "LLM tokens", "1,234,567 tokens", "see tiers",
                     "Tier 2 (above 1,000): 1,233,567 × 0.005 + 2.00 flat", "6169.835", "6177.84", "0.001",
                     "Subtotal", "6268.84", "VAT (19%)", "1191.08", "USD 7459.92", "IBAN DE89 3704 0044 0532 0130 00",
                     'href="https://pay.example.com/in_0123"', "Pay by card", "Amtsgericht Berlin",
                     "billing@example.com", "--accent: #0a7c4a"]:
        assert expected in html, expected
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_html_escapes_every_value() -> None:
    evil = "<script>alert(1)</script>"
    doc = make_doc(number=f"N{evil}", payment_url='https://x.example/"><script>',
                   taxes=[{"name": evil, "rate": "0.1", "amount": "1.00", "note": evil}], notes=[evil])
    doc["customer"] = {"id": "c", "name": evil, "email": evil, "address": {"line1": evil, "city": evil}}
    for line in doc["lines"]:
        line["description"] = evil
        line["note"] = evil
        line["unit"] = evil
    brand = Branding(name=evil, address_lines=(evil,), footer_lines=(evil,), bank_lines=(evil,),
                     support_email=f"a{evil}@x")
    html = render_html(doc, brand)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="https://x.example/' not in html   # an unsafe URL is dropped, not escaped into a link


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://pay.example.com/x", "data:text/html,hi", "  "])
def test_only_https_payment_links_are_rendered(url: str) -> None:
    assert invoice_view(make_doc(payment_url=url)).payment_url is None
    assert "Pay by card" not in render_html(make_doc(payment_url=url), BRAND)


def test_money_is_shown_exactly_as_stored() -> None:
    doc = make_doc(subtotal="0.10", total="0.10")
    doc["lines"] = [{"type": "usage", "description": "Tiny", "amount": "0.10", "amount_unrounded": "0.1000",
                     "quantity": "100000", "unit_amount": "0.000001", "meter": "x", "tiers": [],
                     "period": doc["period"]}]
    html = render_html(doc, BRAND)
    assert ">0.000001<" in html and ">0.10<" in html and "USD 0.10" in html
    assert "1e-06" not in html.lower() and "0.1<" not in html
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    assert "0.000001" in text and "USD 0.10" in text


def test_taxes_with_percentage_and_notes() -> None:
    doc = make_doc(taxes=[{"name": "Sales tax", "percentage": "7.25", "amount": "5.00"},
                          {"name": "VAT", "rate": "0", "amount": "0.00", "note": "Reverse charge: VAT to be "
                                                                                "accounted for by the recipient."}])
    view = invoice_view(doc)
    assert [(t.label, t.amount) for t in view.taxes] == [("Sales tax (7.25%)", "5.00"), ("VAT (0%)", "0.00")]
    assert view.notes == ("Reverse charge: VAT to be accounted for by the recipient.",)
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    assert "Sales tax (7.25%)" in text and "Reverse charge" in text


def test_html_logo_is_embedded_or_linked() -> None:
    data = png()
    embedded = Branding(name="B", logo=load_logo("data:image/png;base64," + base64.b64encode(data).decode()))
    assert f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' in render_html(make_doc(), embedded)
    remote = Branding(name="B", logo=load_logo("https://cdn.example.com/logo.png"))
    assert 'src="https://cdn.example.com/logo.png"' in render_html(make_doc(), remote)


# -- what happens after pricing: discounts, credits, amount due; adjustments, plans, contracts -----
def settled_doc(**changes: Any) -> dict[str, Any]:
    """make_doc after discounts, tax, prepaid credits and a credit note (every figure as stored)."""
    return make_doc(**{
        # subtotal 6268.84; 10 % loyalty = 626.884 -> 626.88; 5.00 off tokens; taxable 6268.84 - 631.88 = 5636.96
        "discounts": [{"discount": "loyal", "description": "Loyalty (10%)", "meter": None, "amount": "626.88"},
                      {"discount": "welcome", "description": "Welcome (5.00 USD on llm_tokens)",
                       "meter": "llm_tokens", "amount": "5.00"}],
        "discount_total": "631.88",
        # 19 % of 5636.96 = 1071.0224 -> 1071.02; total 5636.96 + 1071.02 = 6707.98
        "taxes": [{"name": "VAT", "percentage": "19", "taxable_amount": "5636.96", "amount": "1071.02"}],
        "tax_total": "1071.02", "total": "6707.98",
        # credits 30.00 + 100.00 = 130.00 -> 6577.98; a credit note later took 11.00 -> 6566.98 due
        "credits": [{"grant": "promo", "description": "launch promo", "amount": "30.00"},
                    {"grant": "prepaid", "description": "prepaid credit", "amount": "100.00"}],
        "credits_applied": "130.00", "credited_total": "11.00", "amount_due": "6566.98",
        "payment_url": "https://pay.example.com/in_0123", **changes})


def test_negated_puts_a_sign_in_front_and_never_computes() -> None:
    assert [negated(a) for a in ("6.15", "0.00", "-2.50", "1350", "")] == ["-6.15", "0.00", "2.50", "-1350", ""]


def test_discounts_credits_and_amount_due_in_html_and_pdf() -> None:
    doc = settled_doc()
    view = invoice_view(doc)
    assert [(r.label, r.amount) for r in view.before_total] == [
        ("Subtotal", "6268.84"), ("Loyalty (10%)", "-626.88"), ("Welcome (5.00 USD on llm_tokens)", "-5.00"),
        ("VAT (19%)", "1071.02")]
    assert [(r.label, r.amount) for r in view.after_total] == [
        ("Credit applied: launch promo", "-30.00"), ("Credit applied: prepaid credit", "-100.00"),
        ("Credit notes", "-11.00")]
    assert (view.total, view.amount_due, view.payable) == ("6707.98", "6566.98", True)
    html = render_html(doc, BRAND)
    order = ["Subtotal", "Loyalty (10%)", ">-626.88<", ">-5.00<", "VAT (19%)", "USD 6707.98",
             "Credit applied: launch promo", ">-30.00<", ">-100.00<", "Credit notes", ">-11.00<",
             "Amount due", "USD 6566.98", "Please pay USD 6566.98 by 15 Nov 2026"]
    at = [html.find(s) for s in order]
    assert -1 not in at and at == sorted(at), dict(zip(order, at))
    assert "Please pay USD 6707.98" not in html   # the total is not what is asked for
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    at = [text.find(s) for s in ["Subtotal 6268.84", "Loyalty (10%) -626.88", "-5.00", "VAT (19%) 1071.02",
                                 "Total USD 6707.98", "Credit applied: launch promo -30.00",
                                 "Credit applied: prepaid credit -100.00", "Credit notes -11.00",
                                 "Amount due USD 6566.98", "Please pay USD 6566.98"]]
    assert -1 not in at and at == sorted(at), at


def test_an_invoice_covered_by_credits_asks_for_nothing() -> None:
    # total 61.51, all drawn from prepaid credit: 61.51 - 61.51 = 0.00 due
    doc = make_doc(total="61.51", credits=[{"grant": "prepaid", "description": "prepaid credit", "amount": "61.51"}],
                   credits_applied="61.51", amount_due="0.00")
    view = invoice_view(doc)
    assert (view.payable, view.amount_due, view.notice) == (
        False, "0.00", "Nothing to pay — the total is covered by credits.")
    html = render_html(doc, BRAND)
    assert "USD 0.00" in html and "Nothing to pay" in html and "IBAN" not in html and "Please pay" not in html
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    assert "Amount due USD 0.00" in text and "Nothing to pay" in text and "IBAN" not in text


def test_payment_link_is_shown_beside_the_bank_details_only_when_present() -> None:
    html = render_html(settled_doc(), BRAND)
    assert html.index("IBAN DE89") < html.index('Pay by card: <a href="https://pay.example.com/in_0123">')
    data = render_pdf(settled_doc(), BRAND)
    assert "Pay by card: https://pay.example.com/in_0123" in squash(pdf_text(data))
    assert [a.get_object()["/A"]["/URI"] for a in PdfReader(io.BytesIO(data)).pages[0]["/Annots"]] == [
        "https://pay.example.com/in_0123"]
    without = settled_doc(payment_url=None)
    assert "Pay by card" not in render_html(without, BRAND) and "IBAN DE89" in render_html(without, BRAND)
    data = render_pdf(without, BRAND)
    assert "Pay by card" not in pdf_text(data) and "/Annots" not in PdfReader(io.BytesIO(data)).pages[0]


def test_late_usage_adjustment_names_the_invoice_and_breaks_down_per_meter() -> None:
    september = {"start": "2026-09-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"}
    doc = make_doc()
    doc["lines"].append({"type": "adjustment", "description": "Late usage for invoice INV-000012 (2026-09-01 to "
                                                              "2026-10-01)", "amount": "6.00", "amount_unrounded": "6.00",
                         "period": september, "refers_to": {"invoice": "in_sept", "number": "INV-000012"},
                         "parts": [{"label": "llm_tokens", "units": "700", "amount": "6.00"},
                                   {"label": "api_calls", "units": "1", "amount": "0.00"}]})
    line = invoice_view(doc).lines[3]
    assert line.description == "Late usage for invoice INV-000012 (1 Sep 2026 – 30 Sep 2026)"
    assert (line.unit_price, line.amount, line.notes) == ("see breakdown", "6.00", ())  # period not repeated
    assert [t.text for t in line.tiers] == ["llm_tokens: 700 = 6.00", "api_calls: 1 = 0.00"]
    html = render_html(doc, BRAND)
    assert "Late usage for invoice INV-000012 (1 Sep 2026 – 30 Sep 2026)" in html and "llm_tokens: 700" in html
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    # the description wraps in its column (quantity, unit price and amount sit on its first row)
    assert re.search(r"Late usage for invoice INV-000012 \(1 Sep see breakdown 6\.00 2026 – 30 Sep 2026\)", text), text
    assert "llm_tokens: 700 6.00" in text and "api_calls: 1 0.00" in text


def test_split_period_lines_show_their_plan_and_period_and_contract_prices_are_marked() -> None:
    # November split on the 16th: 'pre' (30.00 in advance) credited 15/30, 'pre2' (60.00; contract 40.00) charged 15/30
    nov = {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    tail = {"start": "2026-11-16T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    doc = make_doc(period=nov, subtotal="5.00", total="5.00", lines=[
        {"type": "base_fee", "description": "Pre base fee credit (billed in advance, plan changed)", "amount": "-15.00",
         "amount_unrounded": "-15.00", "proration": "0.5", "period": tail, "plan": "pre"},
        {"type": "base_fee", "description": "Pre2 base fee (plan change)", "amount": "20.00", "amount_unrounded": "20.00",
         "proration": "0.5", "period": tail, "plan": "pre2", "override": True}])
    credit, fee = invoice_view(doc).lines
    assert (credit.amount, credit.notes) == ("-15.00", ("Prorated 15/30 days (50%)",
                                                        "Period 16 Nov 2026 – 30 Nov 2026 · plan pre"))
    assert (fee.amount, fee.notes) == ("20.00", ("Prorated 15/30 days (50%)",
                                                 "Period 16 Nov 2026 – 30 Nov 2026 · plan pre2", "Contract price"))
    html = render_html(doc, BRAND)
    assert ">-15.00<" in html and "· plan pre<" in html and "· plan pre2<" in html and ">Contract price<" in html
    text = squash(pdf_text(render_pdf(doc, BRAND)))
    assert "-15.00" in text and "plan pre2" in text and "Contract price" in text
    # one plan over the whole period: no plan notes
    single = make_doc()
    for ln in single["lines"]:
        ln["plan"] = "pro"
    assert all(line.notes == () for line in invoice_view(single).lines)
    assert "plan pro" not in render_html(single, BRAND).lower()
    # a split where a part keeps the invoice's period still names its plan
    doc["lines"][1].update(period=nov, proration=None)
    assert invoice_view(doc).lines[1].notes == ("Plan pre2", "Contract price")


def a_credit_note() -> dict[str, Any]:
    """A credit note built by the domain: 12.50 of the tokens line, against an invoice with 10 % tax."""
    from meterbill.domain.adjustments import build_credit_note

    invoice = make_doc(taxes=[{"name": "Sales tax", "percentage": "10", "amount": "626.88"}], total="6895.72",
                       amount_due="6895.72")
    # 12.50 + 10 % tax 1.25 = 13.75, all against the unpaid invoice
    return build_credit_note(note_id="cn_0123", number="CN-000007", invoice=invoice, amount=Decimal("12.50"),
                             reason="product_unsatisfactory", memo="Outage on 12 Oct", created_at="2026-11-20T10:00:00Z",
                             lines=[{"line": 1, "description": "LLM tokens", "amount": "12.50"}])


def test_credit_note_view_html_and_pdf() -> None:
    note = a_credit_note()
    assert (note["subtotal"], note["tax_total"], note["total"], note["credited_to_invoice"]) == (
        "12.50", "1.25", "13.75", "13.75")
    view = credit_note_view(note)
    assert (view.heading, view.title, view.status_label, view.payable, view.amount_due) == (
        "Credit note", "Credit note CN-000007", "Issued", False, None)
    assert [(f.label, f.value) for f in view.facts] == [
        ("Credit note number", "CN-000007"), ("Credits invoice", "INV-000042"), ("Issue date", "20 Nov 2026"),
        ("Reason", "Product unsatisfactory"), ("Currency", "USD")]
    assert [(ln.description, ln.amount, ln.notes) for ln in view.lines] == [("LLM tokens", "12.50", ("Invoice line 2",))]
    assert [(r.label, r.amount) for r in view.before_total + view.after_total] == [
        ("Subtotal", "12.50"), ("Sales tax (10%)", "1.25"), ("Credited to invoice INV-000042", "13.75")]
    html = render_credit_note_html(note, BRAND)
    for expected in ["<title>Credit note CN-000007 — Example Cloud GmbH</title>", "<h1>Credit note</h1>",
                     "Credits invoice", "INV-000042", "Product unsatisfactory", "20 Nov 2026", "Acme Inc",
                     "LLM tokens", ">12.50<", "Sales tax (10%)", ">1.25<", "USD 13.75", "Credited to invoice INV-000042",
                     "Outage on 12 Oct", "Amtsgericht Berlin", "Credit note id cn_0123"]:
        assert expected in html, expected
    assert "Please pay" not in html and "IBAN" not in html and "Amount due" not in html
    data = render_credit_note_pdf(note, BRAND)
    assert PdfReader(io.BytesIO(data)).metadata.title == "Credit note CN-000007"
    text = squash(pdf_text(data))
    for expected in ["CREDIT NOTE", "CN-000007", "ISSUED", "CUSTOMER", "Credits invoice INV-000042",
                     "Reason Product unsatisfactory", "LLM tokens", "Subtotal 12.50", "Sales tax (10%) 1.25",
                     "Total USD 13.75", "Credited to invoice INV-000042 13.75", "Questions about this credit note?"]:
        assert expected in text, expected
    assert "IBAN" not in text and "Amount due" not in text


def test_credit_note_of_an_amount_and_of_a_paid_invoice() -> None:
    note = dict(a_credit_note(), lines=[], credited_to_invoice="0.00", credited_to_balance="13.75", memo=None)
    view = credit_note_view(note)
    assert [(ln.description, ln.amount) for ln in view.lines] == [("Credit against invoice INV-000042", "12.50")]
    assert [(r.label, r.amount) for r in view.after_total] == [
        ("Credited to invoice INV-000042", "0.00"), ("Added to the customer's credit balance", "13.75")]
    text = squash(pdf_text(render_credit_note_pdf(note, BRAND)))
    assert "Added to the customer's credit balance 13.75" in text and "None" not in text


# -- PDF ----------------------------------------------------------------------------------------
def test_pdf_reads_back_with_the_invoice_content() -> None:
    doc = make_doc(payment_url="https://pay.example.com/in_0123")
    data = render_pdf(doc, BRAND)
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    assert reader.metadata is not None and reader.metadata.title == "Invoice INV-000042"
    text = squash(pdf_text(data))
    for expected in ["INVOICE", "INV-000042", "FINAL", "Example Cloud GmbH", "Acme Inc", "Net 14", "15 Nov 2026",
                     "1 Oct 2026 – 31 Oct 2026", "LLM tokens", "1,234,567 tokens", "see tiers",
                     "Tier 1 (0 – 1,000): 1,000 × 0.01", "6169.835", "6177.84", "42,000", "0.001",
                     "Subtotal", "6268.84", "USD 6268.84", "IBAN DE89 3704 0044 0532 0130 00", "Pay by card",
                     "Page 1 of 1", "Amtsgericht Berlin", "billing@example.com"]:
        assert expected in text, expected
    links = [a.get_object()["/A"]["/URI"] for a in reader.pages[0].get("/Annots", [])]
    assert links == ["https://pay.example.com/in_0123"]


def test_pdf_is_deterministic() -> None:
    assert render_pdf(make_doc(), BRAND) == render_pdf(make_doc(), BRAND)


def test_long_invoices_flow_onto_more_pages_with_the_table_header_repeated() -> None:
    doc = make_doc()
    tiered = doc["lines"][1]
    doc["lines"] = [dict(copy.deepcopy(tiered), description=f"Meter {i:02d} " + "long description " * 4)
                    for i in range(40)]
    data = render_pdf(doc, BRAND)
    reader = PdfReader(io.BytesIO(data))
    pages = [squash(p.extract_text()) for p in reader.pages]
    assert len(pages) >= 3
    for n, text in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in text
        if "Meter" in text:
            assert "DESCRIPTION" in text and "AMOUNT (USD)" in text
    assert "USD 6268.84" in pages[-1] and "IBAN DE89" in pages[-1]
    every = " ".join(pages)
    assert all(f"Meter {i:02d}" in every for i in range(40))


def test_pdf_embeds_a_local_logo_and_never_fetches_a_remote_one() -> None:
    local = Branding(name="B", logo=load_logo("data:image/png;base64," + base64.b64encode(png(40, 10)).decode()))
    page = PdfReader(io.BytesIO(render_pdf(make_doc(), local))).pages[0]
    assert len(page.images) == 1
    remote = Branding(name="B", logo=load_logo("https://cdn.example.com/logo.png"))
    assert len(PdfReader(io.BytesIO(render_pdf(make_doc(), remote))).pages[0].images) == 0


def test_a_transparent_logo_keeps_its_alpha_in_every_document() -> None:
    # the logo's image object is encoded once per process and copied into each document
    rgba = base64.b64encode(png(8, 4, alpha=True)).decode()
    brand = Branding(name="B", logo=load_logo("data:image/png;base64," + rgba))
    first, second = render_pdf(make_doc(), brand), render_pdf(make_doc(number="INV-000043"), brand)
    for data in (first, second):
        assert data.count(b"/SMask") == 1
        assert len(PdfReader(io.BytesIO(data)).pages[0].images) == 1
    assert "INV-000043" in pdf_text(second)


def test_pdf_handles_text_outside_the_base_fonts() -> None:
    doc = make_doc()
    doc["customer"]["name"] = "株式会社テスト Ωμέγα Иванов 한국"
    data = render_pdf(doc, BRAND)
    assert data.startswith(b"%PDF-") and b"/HeiseiKakuGo-W5" in data and b"/HYGothic-Medium" in data
    assert len(PdfReader(io.BytesIO(data)).pages) == 1
    assert runs("Zürich €5 × 2 – ok", "Helvetica") == [("Helvetica", "Zürich €5 × 2 – ok")]
    assert [f for f, _ in runs("Acme 株式会社", "Helvetica")] == ["Helvetica", "HeiseiKakuGo-W5"]


def test_wrap_breaks_words_and_overlong_tokens() -> None:
    lines = wrap("alpha beta gamma delta " + "x" * 200, 9.5, 120)
    assert len(lines) > 3 and all(lines)
    assert "".join(lines).replace(" ", "") == ("alphabetagammadelta" + "x" * 200)


@pytest.mark.parametrize(("currency", "plan_amounts", "expected_total"), [
    ("JPY", {"base_fee": "1500", "unit": "3"}, "2100"),
    ("KWD", {"base_fee": "12.345", "unit": "0.0015"}, "12.645"),
])
def test_zero_and_three_decimal_currencies_through_the_real_invoice_builder(
        currency: str, plan_amounts: dict[str, str], expected_total: str) -> None:
    from meterbill.domain.charges import PricingContext, Usage
    from meterbill.domain.invoices import build_invoice
    from meterbill.domain.periods import Period
    from meterbill.domain.plans import parse_plan
    from meterbill.domain.rating import rate

    plan = parse_plan("p", {"currency": currency, "interval": "month", "base_fee": plan_amounts["base_fee"],
                            "charges": [{"meter": "calls", "model": "per_unit",
                                         "unit_amount": plan_amounts["unit"]}]})
    period = Period(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc), 0)

    rated = rate(plan, {"calls": Usage.of(Decimal(200))}, period, period, PricingContext(currency, "UTC"))
    doc = build_invoice(invoice_id="in_x", number="INV-000001", customer={"id": "c", "name": "Client"},
                        plan_code="p", plan_version=1, period=period, rated=rated, created_at="2026-11-01T00:00:00Z")
    assert doc["total"] == expected_total
    html = render_html(doc, BRAND)
    assert f"{currency} {expected_total}" in html and f"Amount ({currency})" in html
    assert f"{currency} {expected_total}" in squash(pdf_text(render_pdf(doc, BRAND)))


# -- branding and settings ----------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "normal"), [("#1F4E79", "#1f4e79"), ("1f4e79", "#1f4e79"), ("#abc", "#aabbcc"),
                                             (" #0a7c4a ", "#0a7c4a")])
def test_accent_colour_is_normalised(raw: str, normal: str) -> None:
    assert accent_colour(raw) == normal


@pytest.mark.parametrize("raw", ["red", "#12345", "#1234567", "#gggggg", "rgb(1,2,3)", "#1f4e79;}body{x"])
def test_a_bad_accent_colour_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ValueError, match="METERBILL_BRAND_ACCENT"):
        Settings.from_env({"METERBILL_BRAND_ACCENT": raw})


def test_branding_settings_from_the_environment() -> None:
    s = Settings.from_env({"METERBILL_BRAND_NAME": " Example Cloud ",
                           "METERBILL_BRAND_ADDRESS": "Hauptstr. 1\\n10115 Berlin\nGermany",
                           "METERBILL_BRAND_ACCENT": "#0A7C4A", "METERBILL_BRAND_FOOTER": "Registered in Berlin",
                           "METERBILL_BANK_DETAILS": "IBAN DE89\\nBIC COBADEFF",
                           "METERBILL_SUPPORT_EMAIL": "billing@example.com",
                           "METERBILL_INVOICE_PREFIX": "EX-"})
    assert (s.brand_name, s.brand_address, s.brand_accent) == ("Example Cloud", "Hauptstr. 1\n10115 Berlin\nGermany",
                                                               "#0a7c4a")
    assert (s.bank_details, s.support_email, s.invoice_prefix, s.brand_logo) == (
        "IBAN DE89\nBIC COBADEFF", "billing@example.com", "EX-", None)
    b = Branding.from_settings(s)
    assert b.address_lines == ("Hauptstr. 1", "10115 Berlin", "Germany")
    assert b.bank_lines == ("IBAN DE89", "BIC COBADEFF") and b.footer_lines == ("Registered in Berlin",)
    defaults = Settings.from_env({})
    assert (defaults.brand_name, defaults.brand_accent, defaults.bank_details) == ("", "#1f4e79", "")


def test_logo_from_a_file_or_a_data_uri(tmp_path: Path) -> None:
    f = tmp_path / "logo.bin"   # recognised by content, not by name
    f.write_bytes(jpeg_header(320, 80))
    logo = load_logo(str(f))
    assert (logo.mime, logo.width, logo.height, logo.embeddable) == ("image/jpeg", 320, 80, True)
    assert logo.src.startswith("data:image/jpeg;base64,")
    uri = load_logo("data:image/png;base64," + base64.b64encode(png(7, 5)).decode())
    assert (uri.mime, uri.width, uri.height) == ("image/png", 7, 5)
    assert image_info(png(2, 9)) == ("image/png", 2, 9)


@pytest.mark.parametrize(("value", "reason"), [
    ("http://cdn.example.com/logo.png", "https"),
    ("data:image/png,rawbytes", "base64"),
    ("data:image/png;base64,@@@", "base64"),
    ("data:image/gif;base64," + base64.b64encode(b"GIF89a....").decode(), "PNG or JPEG"),
    ("/no/such/logo.png", "cannot read"),
    ('https://x.example/"onerror="alert(1)', "not allowed"),
])
def test_bad_logos_are_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(BrandingError, match=reason):
        load_logo(value)


def test_an_unusable_logo_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        b = Branding.from_settings(Settings(brand_name="B", brand_logo="/no/such/logo.png"))
    assert b.logo is None and "METERBILL_BRAND_LOGO" in caplog.text


def test_renderer_loads_branding_on_first_use_and_keeps_it(tmp_path: Path) -> None:
    f = tmp_path / "logo.png"
    r = InvoiceRenderer(Settings(brand_name="Lazy Ltd", brand_logo=str(f)))   # no file yet: not read
    f.write_bytes(png())
    assert "Lazy Ltd" in r.html(make_doc())
    f.unlink()                                                                # read once, kept
    assert r.branding.logo is not None and r.branding is r.branding
    assert len(PdfReader(io.BytesIO(r.pdf(make_doc()))).pages[0].images) == 1
