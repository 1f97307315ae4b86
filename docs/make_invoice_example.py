"""Make docs/invoice-example.{pdf,html,png}: one realistic invoice, produced by the real code.

    .venv/bin/python docs/make_invoice_example.py

The plan is rated by ``meterbill.domain.rating`` and the stored document built by
``meterbill.domain.invoices.build_invoice`` — the same path as a billing run — then rendered by
``meterbill.rendering`` with branding given as the ``METERBILL_BRAND_*`` settings would give
it. The PNG is page 1 of the PDF, rasterised by ``pdftoppm`` (Debian/Ubuntu: poppler-utils).
Output is deterministic: running it again changes no byte of the PDF or HTML.
"""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meterbill.config import Settings  # noqa: E402
from meterbill.domain.adjustments import Grant, draw_credits  # noqa: E402
from meterbill.domain.charges import PricingContext, Usage  # noqa: E402
from meterbill.domain.invoices import build_invoice, invoice_id  # noqa: E402
from meterbill.domain.periods import Period  # noqa: E402
from meterbill.domain.plans import parse_plan  # noqa: E402
from meterbill.domain.rating import rate  # noqa: E402
from meterbill.rendering import InvoiceRenderer  # noqa: E402

ACCENT = (0x1F, 0x4E, 0x79)

PLAN = {
    "currency": "USD", "interval": "month", "base_fee": "499.00", "name": "Scale",
    "minimum_commitment": "1000.00",
    "charges": [
        {"meter": "llm_tokens", "model": "graduated", "display_name": "LLM tokens", "unit": "tokens",
         "free_units": "1000000",
         "tiers": [{"up_to": "10000000", "unit_amount": "0.00002"},
                   {"up_to": "100000000", "unit_amount": "0.000015"},
                   {"up_to": None, "unit_amount": "0.00001"}]},
        {"meter": "gpu_seconds", "model": "matrix", "display_name": "GPU seconds", "unit": "s", "dimensions": ["gpu"],
         "prices": [{"match": {"gpu": "h100"}, "unit_amount": "0.0011"},
                    {"match": {"gpu": "a10g"}, "unit_amount": "0.0003"}], "default_unit_amount": "0.0005"},
        {"meter": "api_requests", "model": "package", "display_name": "API requests", "unit": "requests",
         "package_size": "10000", "package_amount": "4.00"},
        {"meter": "storage_gb", "model": "volume", "display_name": "Storage", "unit": "GB-month",
         "tiers": [{"up_to": "1000", "unit_amount": "0.10"}, {"up_to": None, "unit_amount": "0.07"}]},
        {"meter": "batch_kwh", "model": "time_of_use", "display_name": "Batch compute energy", "unit": "kWh",
         "default_unit_amount": "0.09",
         "windows": [{"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00",
                      "unit_amount": "0.21"}]},
    ],
}
# kWh: 24 buckets per weekday at 09:00 local (peak) and 02:00 (off-peak), 10 kWh each
_KWH = tuple(sorted(
    (int(datetime(2026, 10, d, h, tzinfo=timezone.utc).timestamp()), Decimal(10))
    for d in range(1, 32) if datetime(2026, 10, d).weekday() < 5 for h in (2, 9)))
USAGE = {
    "llm_tokens": Usage.of(Decimal("137482910")),
    "gpu_seconds": Usage(Decimal("52817.5"), 930, {(("gpu", "h100"),): Decimal("40000"),
                                                   (("gpu", "a10g"),): Decimal("12000"),
                                                   (("gpu", "t4"),): Decimal("817.5")}),
    "api_requests": Usage.of(Decimal("918304")),
    "storage_gb": Usage.of(Decimal("1843.2")),
    "batch_kwh": Usage(sum((v for _, v in _KWH), Decimal(0)), len(_KWH), {}, _KWH),
}
CUSTOMER = {"id": "cus_northwind", "name": "Northwind Analytics, Inc.", "email": "accounts-payable@northwind.example",
            "payment_terms_days": 14,
            "address": {"line1": "200 Pine Street", "line2": "Suite 1200", "city": "Seattle", "state": "WA",
                        "postal_code": "98101", "country": "US"}}


def logo_png(size: int = 96) -> bytes:
    """A meter icon: an accent rounded square with three white bars, transparent corners (RGBA)."""
    r = size // 5
    bars = [(0.22, 0.34, 0.55), (0.42, 0.54, 0.30), (0.62, 0.74, 0.42)]  # x from, x to, top (fraction)

    def pixel(x: int, y: int) -> bytes:
        cx, cy = min(x, size - 1 - x), min(y, size - 1 - y)
        if cx < r and cy < r and (r - cx) ** 2 + (r - cy) ** 2 > r * r:
            return b"\x00\x00\x00\x00"
        fx, fy = x / size, y / size
        if any(a <= fx < b and top <= fy < 0.78 for a, b, top in bars):
            return b"\xff\xff\xff\xff"
        return bytes(ACCENT) + b"\xff"

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(size)) for y in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def example_invoice() -> dict:
    plan = parse_plan("scale", PLAN)
    period = Period(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc), 0)
    rated = rate(plan, USAGE, period, period, PricingContext(plan.currency, "UTC"))
    # a prepaid credit grant, drawn after tax (discounts would come before tax: apply_discounts)
    grant = Grant("prepaid-q4", Decimal("500.00"), Decimal("500.00"), datetime(2026, 9, 20, tzinfo=timezone.utc),
                  datetime(2026, 12, 31, tzinfo=timezone.utc), "Q4 prepaid credit")
    return build_invoice(invoice_id=invoice_id(CUSTOMER["id"], period), number="INV-000128", customer=CUSTOMER,
                         plan_code="scale", plan_version=3, period=period, rated=rated,
                         created_at="2026-11-01T00:04:12Z", credits=draw_credits(rated.total, [grant], period.end))


def settings() -> Settings:
    return Settings.from_env({
        "METERBILL_BRAND_NAME": "Example Cloud Inc.",
        "METERBILL_BRAND_ADDRESS": "500 Howard Street\\nSan Francisco, CA 94105\\nUnited States",
        "METERBILL_BRAND_LOGO": "data:image/png;base64," + base64.b64encode(logo_png()).decode(),
        "METERBILL_BRAND_ACCENT": "#%02x%02x%02x" % ACCENT,
        "METERBILL_BRAND_FOOTER": "Example Cloud Inc. · EIN 12-3456789 · Late payments accrue 1% per month.",
        "METERBILL_BANK_DETAILS": "Bank transfer (ACH or wire) to Example Cloud Inc.\\n"
                                  "First Example Bank, N.A. · Account 000123456789 · ABA routing 021000021\\n"
                                  "SWIFT/BIC FEXBUS33 (international wires)",
        "METERBILL_SUPPORT_EMAIL": "billing@example.com",
    })


def main() -> int:
    doc = example_invoice()
    renderer = InvoiceRenderer(settings())
    out = ROOT / "docs"
    (out / "invoice-example.html").write_text(renderer.html(doc), encoding="utf-8")
    pdf = out / "invoice-example.pdf"
    pdf.write_bytes(renderer.pdf(doc))
    print(f"wrote {pdf.relative_to(ROOT)} and docs/invoice-example.html (total {doc['currency']} {doc['total']})")
    if shutil.which("pdftoppm") is None:
        print("pdftoppm not found (apt-get install -y poppler-utils): docs/invoice-example.png not updated",
              file=sys.stderr)
        return 1
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", "-f", "1", "-l", "1", str(pdf),
                    str(out / "invoice-example")], check=True)
    print("wrote docs/invoice-example.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
