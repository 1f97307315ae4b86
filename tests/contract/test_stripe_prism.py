"""Every call the Stripe module makes, sent by the official SDK to Prism serving Stripe's OpenAPI
spec (../shared/specs/stripe): each request validates (no ``sl-violations`` request entries, 2xx).

Prism is stateless and answers with the spec's fixed example objects (the same ids whatever we
send, metadata empty): the look-ups find nothing of ours, so the module creates — which is the
shape we want checked. Steps that first check the Stripe invoice is meterbill's (void, pay, credit
note) would rightly refuse Prism's canned invoice, so their request step is called directly.
The 2023 spec predates InvoicePayments (refund/dispute mapping): that call is type-checked only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from integrations.stripe import StripeIntegration
from meterbill.integration.contract import ExternalRef
from meterbill.integration.keys import idempotency_key
from tests.contract.conftest import Prism, request_violations
from tests.integration.stripe_support import CUSTOMER, invoice, settings


class RecordingClient(stripe.RequestsClient):
    """The SDK's own requests client, keeping each response's status and ``sl-violations``."""

    def __init__(self) -> None:
        super().__init__(timeout=60)
        self.seen: list[tuple[str, str, int, str | None]] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None, **_: Any) -> Any:
        body, status, rheaders = super().request(method, url, headers, post_data)
        self.seen.append((method.upper(), url, status, rheaders.get("sl-violations")))
        return body, status, rheaders


@pytest.fixture
def recorded(stripe_prism: Prism) -> Iterator[tuple[StripeIntegration, RecordingClient]]:
    client = RecordingClient()
    sink = StripeIntegration(settings(api_base=stripe_prism.url), http_client=client)
    yield sink, client
    bad = [(m, u, s, request_violations(v)) for m, u, s, v in client.seen if s >= 400 or request_violations(v)]
    assert not bad, f"requests Prism refused: {bad}"


def paths(client: RecordingClient) -> list[tuple[str, str]]:
    return [(m, u.split("?")[0].split("127.0.0.1")[1].split("/", 1)[1]) for m, u, _, _ in client.seen]


def test_push_an_invoice(recorded: tuple[StripeIntegration, RecordingClient]) -> None:
    sink, client = recorded
    doc = invoice("USD", ("8.00",), tax_percent="25")          # 10.00 USD: the canned invoice's total
    cref = sink.upsert_customer(CUSTOMER)
    ref = sink.push_invoice(doc, cref, idempotency_key("stripe", doc["id"], "push"))
    assert ref.id == "in_1NnmX4GPxmnHQRkJyyhHiHYa"               # Prism's example id, whatever we send
    assert ("POST", "v1/invoices") in paths(client) and ("POST", "v1/invoices/in_1NnmX4GPxmnHQRkJyyhHiHYa/finalize") \
        in paths(client)
    assert paths(client).count(("POST", "v1/invoiceitems")) == 2
    assert all(s < 300 and not request_violations(v) for _, _, s, v in client.seen)


def test_charge_automatically_and_an_existing_customer(recorded: tuple[StripeIntegration, RecordingClient]) -> None:
    sink, client = recorded
    doc = invoice("USD", ("10.00",)) | {"collection_method": "charge_automatically"}
    cref = sink.upsert_customer(CUSTOMER | {"integrations": {"stripe": {"id": "cus_Oaxlz8kB0PJWGa"}}})
    sink.push_invoice(doc, cref, idempotency_key("stripe", doc["id"], "push"))
    assert sink.find_invoice(doc, cref) is None                   # Prism's invoice is not ours
    assert ("GET", "v1/customers/cus_Oaxlz8kB0PJWGa") in paths(client)


def test_void_pay_credit_note_and_read_back(recorded: tuple[StripeIntegration, RecordingClient]) -> None:
    sink, client = recorded
    ref = ExternalRef("in_1NnmX4GPxmnHQRkJyyhHiHYa")
    note = {"id": "cn_1", "number": "CN-000001", "invoice_id": "in_x", "currency": "USD", "total": "3.00",
            "reason": "order_change", "memo": "goodwill"}
    sink._update_customer("cus_Oaxlz8kB0PJWGa", {"name": "Acme AG", "email": "ap@acme.test"}, "mb:stripe:acme:cu:v1")
    sink._void(ref.id, "mb:stripe:in_x:void:v1")
    sink._pay_out_of_band(ref.id, "mb:stripe:in_x:pay:v1")
    assert sink._credit_note("cn_1", ref.id) is None
    sink._create_credit_note(note, ref.id, 100, "mb:stripe:cn_1:credit-note:v1")   # 100 open, 200 out of band
    sink.client.v1.invoices.delete(ref.id)
    state = sink.fetch_invoice_state(ref.id)
    assert state.external_id == ref.id and state.meterbill_invoice_id is None
    assert {p for p in paths(client)} >= {("POST", "v1/customers/cus_Oaxlz8kB0PJWGa"),
                                          ("POST", "v1/invoices/in_1NnmX4GPxmnHQRkJyyhHiHYa/void"),
                                          ("POST", "v1/invoices/in_1NnmX4GPxmnHQRkJyyhHiHYa/pay"),
                                          ("POST", "v1/credit_notes"), ("GET", "v1/credit_notes")}


def test_prism_refuses_an_invalid_request(stripe_prism: Prism) -> None:
    """The harness really validates: a request missing a required field gets 422 and names it."""
    client = RecordingClient()
    sdk = stripe.StripeClient("sk_test_123", base_addresses={"api": stripe_prism.url}, http_client=client)
    with pytest.raises(stripe.StripeError):
        sdk.v1.invoice_items.create(params={"currency": "usd", "amount": 100})   # no customer
    (_, _, status, header), = client.seen
    assert status == 422 and any("customer" in str(v.get("message")) for v in request_violations(header))


def test_a_dunning_reminder_is_stripes_send_invoice(recorded: tuple[StripeIntegration, RecordingClient]) -> None:
    """``notify`` (a reminder on a send_invoice invoice) → ``POST /v1/invoices/{id}/send`` with its key."""
    sink, client = recorded
    ref = sink._send("in_1NnmX4GPxmnHQRkJyyhHiHYa", "mb:stripe:in_x:reminder:reminder-h-1:v1/send")
    assert ref.id == "in_1NnmX4GPxmnHQRkJyyhHiHYa"
    assert paths(client) == [("POST", "v1/invoices/in_1NnmX4GPxmnHQRkJyyhHiHYa/send")]
