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
from meterbill.api.routes import HTML_CSP
from tests.integration.test_api import SECRETS, Api
from tests.unit.test_rendering import png

OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
EVIL = "<script>alert(1)</script>"
LOGO = "data:image/png;base64," + base64.b64encode(png(30, 10)).decode()


@pytest.fixture
def container(ddb: Any, clock: Any, close_queue_url: str) -> Any:
    """The conftest container, plus branding and payment instructions (drain uses this one)."""
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    settings = Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                        brand_name="Example Cloud GmbH", brand_address="Hauptstr. 1\n10115 Berlin",
                        brand_logo=LOGO, brand_accent="#0a7c4a", brand_footer="Registered in Berlin, HRB 1",
                        bank_details="IBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX",
                        support_email="billing@example.com", usage_wait_s=0, stream_settle_s=0,
                        close_queue_url=close_queue_url)
    return bootstrap(settings, client=ddb, clock=clock, cache_ttl_s=0)


@pytest.fixture
def api(container: Any) -> Api:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container), container)


CUSTOMER = {"name": EVIL, "email": "billing@acme.example", "plan": "pro", "started_at": OCT, "billing_anchor": OCT,
            "payment_terms_days": 14, "address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345",
                                                  "country": "US"}}


def setup_catalog(api: Api) -> None:
    """Meters tokens and calls; plan 'pro': 49.00 base fee, tokens graduated 0.01 up to 1,000 then
    0.005, calls 0.001 each; customer 'acme' (a hostile name) monthly from October."""
    api.ok("PUT", "/v1/meters/tokens", {"event_type": "api.call", "aggregation": "sum", "property": "tokens",
                                        "unit": "tokens"})
    api.ok("PUT", "/v1/meters/calls", {"event_type": "api.call", "aggregation": "count", "unit": "calls"})
    api.ok("PUT", "/v1/plans/pro", {"currency": "USD", "interval": "month", "base_fee": "49.00", "name": "Pro",
                                    "charges": [
                                        {"meter": "tokens", "model": "graduated", "display_name": "LLM tokens",
                                         "tiers": [{"up_to": "1000", "unit_amount": "0.01"},
                                                   {"up_to": None, "unit_amount": "0.005"}]},
                                        {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}]})
    api.ok("PUT", "/v1/customers/acme", CUSTOMER)


def october(api: Api, drain: Any) -> dict[str, Any]:
    """5 events of 300 tokens, October closed: the final invoice T-000001."""
    events = [ev(i, ts=f"2026-10-{10 + i:02d}T10:00:00Z", tokens=300) for i in range(5)]
    assert api.ok("POST", "/v1/events", {"events": events}, key="ingest")["accepted"] == 5
    drain()
    run = api.billing_run({"as_of": NOV})
    assert len(run["invoices_created"]) == 1, run
    doc = api.ok("GET", f"/v1/invoices/{run['invoices_created'][0]}")
    return dict(doc)


@pytest.fixture
def invoice(api: Api, drain: Any) -> dict[str, Any]:
    """One final invoice: base fee, graduated tokens (two tiers), per-unit calls; a hostile name."""
    setup_catalog(api)
    doc = october(api, drain)
    assert (doc["number"], doc["total"]) == ("T-000001", "61.51")
    return doc


def test_html_invoice(api: Api, invoice: dict[str, Any]) -> None:
    resp = api.get(f"/v1/invoices/{invoice['id']}.html", key="read")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-disposition"] == 'inline; filename="T-000001.html"'
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    html = resp.text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for expected in ["Example Cloud GmbH", "Hauptstr. 1", 'src="data:image/png;base64,', "T-000001",
                     "billing@acme.example", "1 Main St", "Net 14", "1 Nov 2026", "19 Nov 2026",
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
    for expected in ["INVOICE", "T-000001", "FINAL", "Example Cloud GmbH", EVIL, "Net 14", "19 Nov 2026",
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


# -- after pricing: discounts, credits, credit notes, late usage, plan changes ----------------
def html_of(api: Api, path: str) -> str:
    resp = api.get(path, key="read")
    assert resp.status_code == 200, resp.text
    return resp.text


def pdf_of(api: Api, path: str) -> str:
    resp = api.get(path, key="read")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pdf", resp.text
    return " ".join(re.sub(r"\s+", " ", p.extract_text()) for p in PdfReader(io.BytesIO(resp.content)).pages)


def test_discount_and_prepaid_credit_are_shown_and_the_amount_due_is_asked_for(api: Api, drain: Any) -> None:
    setup_catalog(api)
    api.ok("PUT", "/v1/customers/acme/discounts/loyal", {"type": "percentage", "percentage": "10",
                                                          "duration": "forever", "name": "Loyalty"})
    api.ok("PUT", "/v1/customers/acme/credit-grants/promo", {"amount": "20.00", "reason": "launch promo"})
    doc = october(api, drain)
    # lines 49.00 + 12.50 + 0.01 = 61.51; 10 % = 6.151 -> 6.15; total 55.36; 20.00 credit -> 35.36 due
    assert (doc["subtotal"], doc["discount_total"], doc["total"], doc["credits_applied"], doc["amount_due"]) == (
        "61.51", "6.15", "55.36", "20.00", "35.36")
    html = html_of(api, f"/v1/invoices/{doc['id']}.html")
    for expected in ['<tr class="discount"><td>Loyalty (10%)</td><td class="num">-6.15</td>',
                     '<td>Total</td><td class="num">USD 55.36</td>',
                     '<tr class="credit"><td>Credit applied: launch promo</td><td class="num">-20.00</td>',
                     '<td>Amount due</td><td class="num">USD 35.36</td>', "Please pay USD 35.36 by 19 Nov 2026"]:
        assert expected in html, expected
    assert "Pay by card" not in html  # no payment link stored
    text = pdf_of(api, f"/v1/invoices/{doc['id']}.pdf")
    for expected in ["Subtotal 61.51", "Loyalty (10%) -6.15", "Total USD 55.36", "Credit applied: launch promo -20.00",
                     "Amount due USD 35.36", "Please pay USD 35.36 by 19 Nov 2026"]:
        assert expected in text, expected
    assert "Pay by card" not in text


def test_credit_note_documents(api: Api, invoice: dict[str, Any]) -> None:
    resp = api.post("/v1/credit-notes", {"invoice": invoice["id"], "lines": [{"line": 1, "amount": "12.50"}],
                                         "reason": "product_unsatisfactory", "memo": f"Outage {EVIL}"})
    assert resp.status_code == 201, resp.text
    note = resp.json()
    # no tax: 12.50 credited, all of it against the unpaid 61.51 -> 49.01 left to pay
    assert (note["number"], note["total"], note["credited_to_invoice"]) == ("CN-000001", "12.50", "12.50")
    resp = api.get(f"/v1/credit-notes/{note['id']}.html", key="read")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-disposition"] == 'inline; filename="CN-000001.html"'
    assert resp.headers["content-security-policy"] == HTML_CSP and resp.headers["x-content-type-options"] == "nosniff"
    html = resp.text
    assert "<script>" not in html and "Outage &lt;script&gt;" in html
    for expected in ["<h1>Credit note</h1>", "CN-000001", "Credits invoice", "<strong>T-000001</strong>",
                     "Product unsatisfactory", "5 Nov 2026", "Example Cloud GmbH", 'src="data:image/png;base64,',
                     "LLM tokens", "Invoice line 2", '<td class="num">12.50</td>', "USD 12.50",
                     "Credited to invoice T-000001", "Registered in Berlin", f"Credit note id {note['id']}"]:
        assert expected in html, expected
    assert "IBAN" not in html and "Please pay" not in html
    resp = api.get(f"/v1/credit-notes/{note['id']}.pdf", key="read")
    assert resp.headers["content-disposition"] == 'inline; filename="CN-000001.pdf"'
    reader = PdfReader(io.BytesIO(resp.content))
    assert reader.metadata is not None and reader.metadata.title == "Credit note CN-000001"
    assert len(reader.pages) == 1 and len(reader.pages[0].images) == 1   # the logo
    text = pdf_of(api, f"/v1/credit-notes/{note['id']}.pdf")
    for expected in ["CREDIT NOTE", "CN-000001", "ISSUED", EVIL, "Credits invoice T-000001", "Issue date 5 Nov 2026",
                     "LLM tokens", "Subtotal 12.50", "Total USD 12.50", "Credited to invoice T-000001 12.50"]:
        assert expected in text, expected
    # the invoice now shows the credit note and asks for what is left
    html = html_of(api, f"/v1/invoices/{invoice['id']}.html")
    assert '<td>Credit notes</td><td class="num">-12.50</td>' in html
    assert "Amount due</td><td class=\"num\">USD 49.01<" in html and "Please pay USD 49.01" in html
    assert "Credit notes -12.50 Amount due USD 49.01" in pdf_of(api, f"/v1/invoices/{invoice['id']}.pdf")
    # the JSON route is unchanged; the documents need a read key; only the exact suffixes exist
    assert api.ok("GET", f"/v1/credit-notes/{note['id']}") == note
    for suffix in ("pdf", "html"):
        assert api.get(f"/v1/credit-notes/{note['id']}.{suffix}", key=None).status_code == 401
        assert api.get(f"/v1/credit-notes/{note['id']}.{suffix}", key="ingest").status_code == 403
        missing = api.get(f"/v1/credit-notes/cn_nope.{suffix}", key="read")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for suffix in (".xml", ".PDF", ".pdf.html", "Xpdf", "_html", ".pdfx"):
        assert api.get(f"/v1/credit-notes/{note['id']}{suffix}", key="read").status_code == 404, suffix
    paths = api.ok("GET", "/v1/openapi.json")["paths"]
    assert "application/pdf" in paths["/v1/credit-notes/{note_id}.pdf"]["get"]["responses"]["200"]["content"]
    assert "text/html" in paths["/v1/credit-notes/{note_id}.html"]["get"]["responses"]["200"]["content"]


def test_late_usage_adjustment_line_names_the_earlier_invoice(api: Api, invoice: dict[str, Any], drain: Any,
                                                               clock: Any) -> None:
    late = ev("late-1", ts="2026-10-31T23:59:00Z", tokens=700)
    assert api.ok("POST", "/v1/events", {"events": [late]}, key="ingest")["accepted"] == 1
    drain()
    clock.advance(days=30)
    api.billing_run({"as_of": "2026-12-01T00:00:00Z"})
    november = [i for i in api.ok("GET", "/v1/invoices", params={"customer": "acme"})["data"]
                if i["period"]["start"] == NOV][0]
    # October re-rated: 2,200 tokens = 10.00 + 1,200 x 0.005 = 16.00 (was 12.50); 6 calls 0.006 -> 0.01 (was 0.01)
    assert [(ln["type"], ln["amount"]) for ln in november["lines"]][-1] == ("adjustment", "3.50")
    html = html_of(api, f"/v1/invoices/{november['id']}.html")
    assert "Late usage for invoice T-000001 (1 Oct 2026 – 31 Oct 2026)</td>" in html
    assert "tokens: 700</td><td class=\"num\">3.50</td>" in html and "calls: 1</td><td class=\"num\">0.00</td>" in html
    text = pdf_of(api, f"/v1/invoices/{november['id']}.pdf")
    assert "Late usage for invoice T-000001 (1 Oct" in text and "tokens: 700 3.50 calls: 1 0.00" in text


def test_plan_change_lines_show_their_plan_and_period_and_the_contract_price(api: Api, drain: Any) -> None:
    setup_catalog(api)
    api.ok("PUT", "/v1/plans/max", {"currency": "USD", "interval": "month", "base_fee": "99.00", "name": "Max",
                                    "charges": [{"meter": "tokens", "model": "per_unit", "unit_amount": "0.002"}]})
    api.ok("PUT", "/v1/customers/acme", {**CUSTOMER, "plan": "max", "plan_effective_at": "2026-10-16T00:00:00Z",
                                         "price_overrides": {"base_fee": "90.00"}})
    api.billing_run({"as_of": NOV})
    doc = api.ok("GET", "/v1/invoices", params={"customer": "acme"})["data"][0]
    # Pro 49.00 x 15/31 = 23.709… -> 23.71; Max at the contract 90.00 x 16/31 = 46.451… -> 46.45
    assert [(ln["plan"], ln["type"], ln["amount"], ln.get("override", False)) for ln in doc["lines"]
            if ln["type"] == "base_fee"] == [("pro", "base_fee", "23.71", False), ("max", "base_fee", "46.45", True)]
    html = html_of(api, f"/v1/invoices/{doc['id']}.html")
    for expected in ["Period 1 Oct 2026 – 15 Oct 2026 · plan pro<", "Period 16 Oct 2026 – 31 Oct 2026 · plan max<",
                     ">Contract price<", ">23.71<", ">46.45<"]:
        assert expected in html, expected
    assert html.count("Contract price") == 1
    text = pdf_of(api, f"/v1/invoices/{doc['id']}.pdf")
    assert "Period 16 Oct 2026 – 31 Oct 2026 · plan max Contract price" in text
