"""Invoice documents through the HTTP API, in-process: GET /v1/invoices/{id}.html and .pdf on
the real app, services and adapters (moto), with branding from Settings — and the same routes
through the Lambda resolver, to see the PDF leave as base64 for API Gateway."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, HttpResolverLocal
from pypdf import PdfReader

from meterbill.api.app import build_app
from tests.conftest import ev
from tests.integration.test_api import SECRETS, Api
from tests.unit.test_rendering import png

OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
EVIL = "<script>alert(1)</script>"
LOGO = "data:image/png;base64," + base64.b64encode(png(30, 10)).decode()


@pytest.fixture
def container(ddb: Any, clock: Any) -> Any:
    """The conftest container, plus branding and payment instructions (drain uses this one)."""
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    settings = Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                        brand_name="Example Cloud GmbH", brand_address="Hauptstr. 1\n10115 Berlin",
                        brand_logo=LOGO, brand_accent="#0a7c4a", brand_footer="Registered in Berlin, HRB 1",
                        bank_details="IBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX",
                        support_email="billing@example.com")
    return bootstrap(settings, client=ddb, clock=clock, cache_ttl_s=0)


@pytest.fixture
def api(container: Any) -> Api:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container))


@pytest.fixture
def invoice(api: Api, drain: Any) -> dict[str, Any]:
    """One final invoice: base fee, graduated tokens (two tiers), per-unit calls; a hostile name."""
    api.ok("PUT", "/v1/meters/tokens", {"event_type": "api.call", "aggregation": "sum", "property": "tokens",
                                        "unit": "tokens"})
    api.ok("PUT", "/v1/meters/calls", {"event_type": "api.call", "aggregation": "count", "unit": "calls"})
    api.ok("PUT", "/v1/plans/pro", {"currency": "USD", "interval": "month", "base_fee": "49.00", "name": "Pro",
                                    "charges": [
                                        {"meter": "tokens", "model": "graduated", "display_name": "LLM tokens",
                                         "tiers": [{"up_to": "1000", "unit_amount": "0.01"},
                                                   {"up_to": None, "unit_amount": "0.005"}]},
                                        {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}]})
    api.ok("PUT", "/v1/customers/acme", {"name": EVIL, "email": "billing@acme.example", "plan": "pro",
                                         "started_at": OCT, "billing_anchor": OCT, "payment_terms_days": 14,
                                         "address": {"line1": "1 Main St", "city": "Springfield",
                                                     "postal_code": "12345", "country": "US"}})
    events = [ev(i, ts=f"2026-10-{10 + i:02d}T10:00:00Z", tokens=300) for i in range(5)]
    assert api.ok("POST", "/v1/events", {"events": events}, key="ingest")["accepted"] == 5
    drain()
    run = api.ok("POST", "/v1/billing-runs", {"as_of": NOV})
    assert len(run["invoices_created"]) == 1, run
    doc = api.ok("GET", f"/v1/invoices/{run['invoices_created'][0]}")
    assert (doc["number"], doc["total"]) == ("T-000001", "61.51")
    return dict(doc)


def test_html_invoice(api: Api, invoice: dict[str, Any]) -> None:
    resp = api.get(f"/v1/invoices/{invoice['id']}.html", key="read")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-disposition"] == 'inline; filename="T-000001.html"'
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    html = resp.text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for expected in ["Example Cloud GmbH", "Hauptstr. 1", 'src="data:image/png;base64,', "T-000001",
                     "billing@acme.example", "1 Main St", "Net 14", "1 Nov 2026", "15 Nov 2026",
                     "1 Oct 2026 – 31 Oct 2026", "Pro base fee", "LLM tokens", "1,500 tokens", "see tiers",
                     "Tier 1 (0 – 1,000): 1,000 × 0.01", "Tier 2 (above 1,000): 500 × 0.005", "2.50<", "12.50",
                     "5 calls", "0.001", "0.01", "49.00", "61.51", "USD 61.51", "IBAN DE89 3704 0044 0532 0130 00",
                     "quoting <strong>T-000001</strong>", "Registered in Berlin", "billing@example.com",
                     "--accent: #0a7c4a"]:
        assert expected in html, expected


def test_pdf_invoice(api: Api, invoice: dict[str, Any]) -> None:
    resp = api.get(f"/v1/invoices/{invoice['id']}.pdf", key="read")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.headers["content-disposition"] == 'inline; filename="T-000001.pdf"'
    assert resp.content.startswith(b"%PDF-") and resp.content.rstrip().endswith(b"%%EOF")
    reader = PdfReader(io.BytesIO(resp.content))
    assert len(reader.pages) == 1 and len(reader.pages[0].images) == 1   # the logo
    text = re.sub(r"\s+", " ", reader.pages[0].extract_text())
    for expected in ["INVOICE", "T-000001", "FINAL", "Example Cloud GmbH", EVIL, "Net 14", "15 Nov 2026",
                     "LLM tokens", "1,500 tokens", "Tier 2 (above 1,000): 500 × 0.005", "2.50", "12.50",
                     "Subtotal", "61.51", "USD 61.51", "IBAN DE89", "Page 1 of 1"]:
        assert expected in text, expected


def test_document_routes_need_a_read_key(api: Api, invoice: dict[str, Any]) -> None:
    for suffix in ("pdf", "html"):
        assert api.get(f"/v1/invoices/{invoice['id']}.{suffix}", key=None).status_code == 401
        assert api.get(f"/v1/invoices/{invoice['id']}.{suffix}", key="ingest").status_code == 403
        assert api.get(f"/v1/invoices/{invoice['id']}.{suffix}", key="admin").status_code == 200


def test_json_route_is_unchanged(api: Api, invoice: dict[str, Any]) -> None:
    resp = api.get(f"/v1/invoices/{invoice['id']}", key="read")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert resp.json() == invoice


@pytest.mark.parametrize("path", ["/v1/invoices/in_nope.pdf", "/v1/invoices/in_nope.html"])
def test_unknown_invoice_is_404(api: Api, invoice: dict[str, Any], path: str) -> None:
    resp = api.get(path, key="read")
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("suffix", [".xml", ".PDF", ".pdf.html", "Xpdf", "_html", ".pdfx"])
def test_other_suffixes_are_404(api: Api, invoice: dict[str, Any], suffix: str) -> None:
    resp = api.get(f"/v1/invoices/{invoice['id']}{suffix}", key="read")
    assert resp.status_code == 404, (suffix, resp.status_code)
    assert resp.json()["error"]["code"] == "not_found"


def test_document_routes_are_in_the_openapi_schema(api: Api) -> None:
    paths = api.ok("GET", "/v1/openapi.json")["paths"]
    assert "application/pdf" in paths["/v1/invoices/{invoice_id}.pdf"]["get"]["responses"]["200"]["content"]
    assert "text/html" in paths["/v1/invoices/{invoice_id}.html"]["get"]["responses"]["200"]["content"]


def lambda_event(path: str) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2) request, as the ApiFunction receives it."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"authorization": f"Bearer {SECRETS['read']}", "accept-encoding": "gzip, deflate"},
            "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                               "domainPrefix": "api", "stage": "$default", "requestId": "r1",
                               "routeKey": "$default", "time": "01/Nov/2026:00:00:00 +0000",
                               "timeEpoch": 1793491200000,
                               "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "192.0.2.1", "userAgent": "test"}},
            "isBase64Encoded": False}


def test_lambda_returns_the_pdf_base64_encoded_for_api_gateway(container: Any, invoice: dict[str, Any]) -> None:
    app = build_app(APIGatewayHttpResolver, lambda: container)
    out = app.resolve(lambda_event(f"/v1/invoices/{invoice['id']}.pdf"), None)  # type: ignore[arg-type]
    assert out["statusCode"] == 200 and out["isBase64Encoded"] is True
    assert out["headers"]["Content-Type"] == "application/pdf"
    assert base64.b64decode(out["body"]).startswith(b"%PDF-")

    html = app.resolve(lambda_event(f"/v1/invoices/{invoice['id']}.html"), None)  # type: ignore[arg-type]
    assert html["statusCode"] == 200 and html["isBase64Encoded"] is False
    assert "T-000001" in html["body"]

    missing = app.resolve(lambda_event("/v1/invoices/in_nope.pdf"), None)  # type: ignore[arg-type]
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["error"]["code"] == "not_found"
