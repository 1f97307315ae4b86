"""Invoice documents: HTML and PDF rendering of a realistic invoice, one process on one core.

The invoice is made by the real code (plan -> rate -> build_invoice): a base fee and 7 usage
lines (5 graduated, with 2-4 tier rows each, and 2 per-unit), 8 lines in all, with full
branding (PNG logo, address, bank details, footer). 32 distinct documents are cycled.
"""

from __future__ import annotations

from meterbill.domain.charges import PricingContext, Usage

import random
import struct
import zlib
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from bench import median_seconds, report

N = 32  # distinct invoices, cycled

PLAN = {
    "currency": "USD", "interval": "month", "base_fee": "499.00", "name": "Scale",
    "charges": [
        {"meter": "api_calls", "model": "graduated", "display_name": "API calls", "tiers": [
            {"up_to": "10000", "unit_amount": "0.001"}, {"up_to": "100000", "unit_amount": "0.0008"},
            {"up_to": None, "unit_amount": "0.0005"}]},
        {"meter": "llm_tokens", "model": "graduated", "display_name": "LLM tokens", "tiers": [
            {"up_to": "1000000", "unit_amount": "0.00002"}, {"up_to": "10000000", "unit_amount": "0.000015"},
            {"up_to": "100000000", "unit_amount": "0.00001"}, {"up_to": None, "unit_amount": "0.000008"}]},
        {"meter": "gpu_seconds", "model": "graduated", "display_name": "GPU seconds", "tiers": [
            {"up_to": "3600", "unit_amount": "0.0011"},
            {"up_to": "36000", "unit_amount": "0.0009", "flat_amount": "2.00"},
            {"up_to": None, "unit_amount": "0.0007", "flat_amount": "10.00"}]},
        {"meter": "storage_gb", "model": "graduated", "display_name": "Storage (GB-month)", "tiers": [
            {"up_to": "100", "unit_amount": "0.10"}, {"up_to": "1000", "unit_amount": "0.08"},
            {"up_to": None, "unit_amount": "0.05"}]},
        {"meter": "active_users", "model": "graduated", "display_name": "Active users", "tiers": [
            {"up_to": "10", "unit_amount": "0"}, {"up_to": None, "unit_amount": "5"}]},
        {"meter": "emails", "model": "per_unit", "display_name": "Emails sent", "unit_amount": "0.0004"},
        {"meter": "sms", "model": "per_unit", "display_name": "SMS sent", "unit_amount": "0.0075"},
    ],
}
RANGE = {"api_calls": (20_000, 250_000), "llm_tokens": (2_000_000, 150_000_000), "gpu_seconds": (4_000, 60_000),
         "storage_gb": (150, 5_000), "active_users": (12, 180), "emails": (0, 90_000), "sms": (0, 4_000)}


def _logo_png(width: int = 300, height: int = 90) -> bytes:
    """A 300x90 RGB PNG with some structure (a realistic logo size), made with zlib."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"".join(bytes(((x * 7) % 256, (y * 3) % 256, 121)) for x in range(width))
                    for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _documents() -> list[dict[str, Any]]:
    from meterbill.domain.invoices import build_invoice
    from meterbill.domain.periods import Period
    from meterbill.domain.plans import parse_plan
    from meterbill.domain.rating import rate

    plan = parse_plan("scale", PLAN)
    period = Period(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc), 0)
    rng = random.Random(7)
    docs = []
    for i in range(N):
        usages = {m: Usage.of(Decimal(rng.randrange(lo, hi))) for m, (lo, hi) in RANGE.items()}
        customer = {"id": f"cus_{i:04d}", "name": f"Customer {i} Holdings Ltd", "email": f"ap{i}@customer.example",
                    "payment_terms_days": 14, "address": {"line1": f"{i} Market Street", "city": "San Francisco",
                                                          "state": "CA", "postal_code": "94105", "country": "US"}}
        docs.append(build_invoice(invoice_id=f"in_{i:020x}", number=f"INV-{i + 1:06d}", customer=customer,
                                  plan_code="scale", plan_version=1, period=period,
                                  rated=rate(plan, usages, period, period, PricingContext(plan.currency, "UTC")),
                                  created_at="2026-11-01T00:05:00Z"))
    return docs


def run() -> None:
    import base64

    from meterbill.rendering import Branding, InvoiceRenderer
    from meterbill.rendering.branding import load_logo

    branding = Branding(
        name="Example Cloud Inc.", address_lines=("500 Howard Street", "San Francisco, CA 94105", "United States"),
        logo=load_logo("data:image/png;base64," + base64.b64encode(_logo_png()).decode()), accent="#1f4e79",
        footer_lines=("Example Cloud Inc. · EIN 12-3456789",),
        bank_lines=("Bank: Example Bank, N.A.", "Account: 000123456789 · Routing (ABA): 021000021",
                    "SWIFT: EXAMUS33"), support_email="billing@example.com")
    renderer = InvoiceRenderer(branding)
    docs = _documents()
    assert all(len(d["lines"]) == 8 for d in docs)
    tier_rows = sum(len(ln.get("tiers") or ()) for ln in docs[0]["lines"])

    def pdf_all() -> None:
        for d in docs:
            renderer.pdf(d)

    def html_all() -> None:
        for d in docs:
            renderer.html(d)

    size = len(renderer.pdf(docs[0]))
    t = median_seconds(pdf_all, repeats=5, number=2, warmup=1)
    report("render_pdf_invoices_per_s", N / t.median, "invoices/s", ">= 50",
           note=f"A4, 8 lines + {tier_rows} tier rows, PNG logo, ReportLab; ~{size // 1024} KiB each; {t.spread(N)}")
    t = median_seconds(html_all, repeats=5, number=5, warmup=1)
    report("render_html_invoices_per_s", N / t.median, "invoices/s",
           note=f"Jinja2, compiled once, logo inlined as data URI; {t.spread(N)}")
