"""Every call the Xero module makes, sent by the official SDK (xero-python) to Prism serving Xero's
Accounting spec (../shared/specs/xero, the Prism-safe copy that validates request bodies): each
request validates (no ``sl-violations`` request entry, 2xx).

Prism is stateless and answers with the spec's examples: the look-ups find nothing of ours, so
the module creates — the shape we want checked. Prism's canned invoice has other totals and
another ``Reference`` than ours, so the steps after the create (totals check, authorise, void,
payment, credit note and its allocation) are called directly. The SDK gets a token already held
(Prism accepts any bearer token; the token endpoint is not part of the spec).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integrations.xero import XeroIntegration
from meterbill.integration.contract import ExternalRef
from tests.contract.conftest import Prism, RecordingPool
from tests.integration.stripe_support import CUSTOMER, invoice
from tests.integration.xero_support import HELD_TOKEN, settings

NOTE = {"id": "cn-1", "number": "CN-000001", "invoice_id": "x", "invoice_number": "INV-000001", "currency": "USD",
        "reason": "order_change", "memo": "goodwill", "subtotal": "2.00", "tax_total": "0.20", "tax_inclusive": False,
        "total": "2.20", "credited_to_invoice": "2.20", "created_at": "2026-11-06T10:00:00Z"}


@pytest.fixture
def recorded(xero_prism: Prism) -> Iterator[tuple[XeroIntegration, RecordingPool]]:
    pool = RecordingPool()
    yield XeroIntegration(settings(api_base=xero_prism.url), http=pool, token=HELD_TOKEN), pool
    assert not pool.refused(), f"requests Prism refused: {pool.refused()}"


def paths(pool: RecordingPool) -> list[tuple[str, str]]:
    return [(m, u.split("?")[0].split("127.0.0.1")[1].split("/", 1)[1]) for m, u, _, _ in pool.seen]


def test_contact_and_invoice(recorded: tuple[XeroIntegration, RecordingPool]) -> None:
    sink, pool = recorded
    cref = sink.upsert_customer(CUSTOMER)
    sink._create_contact("acme", "Acme GmbH", "billing@acme.test")
    doc = invoice("USD", ("12.34", "0.66"), tax_percent="19", credits="1.00")
    doc["lines"][0]["quantity"] = "1234"                         # a 4-decimal unit price
    assert sink._find(doc) is None
    draft = sink._create_draft(doc, cref, "mb:xero:inv:push:v1")
    sink._authorise(draft.invoice_id, "mb:xero:inv:push:v1/authorise")
    created = next(u for m, u, _, _ in pool.seen if m == "PUT" and u.split("?")[0].endswith("/Invoices"))
    assert "unitdp=4" in created
    assert {("GET", "Contacts"), ("PUT", "Contacts"), ("GET", "Invoices"), ("PUT", "Invoices"),
            ("POST", f"Invoices/{draft.invoice_id}")} <= set(paths(pool)), paths(pool)


def test_void_payment_credit_note_and_allocation(recorded: tuple[XeroIntegration, RecordingPool]) -> None:
    sink, pool = recorded
    from xero_python.accounting import Account, Invoice, Invoices, Payment

    found: Any = sink.api.get_invoice(sink.tenant, "4f7a0a2e-8c1d-4d8e-9e43-6c5b4c1c2d3e", unitdp=4)
    current = found.invoices[0]
    sink.api.update_invoice(sink.tenant, current.invoice_id, Invoices(invoices=[Invoice(status="VOIDED")]),
                            idempotency_key="mb:xero:inv:void:v1")
    from datetime import date
    from decimal import Decimal

    # what record_payment sends (offline and collected payments): PUT /Payments with an Idempotency-Key
    sink._put_payment(Payment(invoice=Invoice(invoice_id=current.invoice_id), account=Account(code="090"),
                              date=date(2026, 11, 5), amount=Decimal("10.00"), reference="WIRE-1"),
                      "mb:xero:in_x:payment:payment-h-1:v1/payment")
    assert sink._credit_note(NOTE) is None
    cn = sink._create_credit_note(NOTE, current, "mb:xero:cn-1:credit-note:v1")
    sink._allocate(NOTE | {"credited_to_invoice": "2.20"}, cn, current.invoice_id, "mb:xero:cn-1:allocate:v1")
    assert {("PUT", "Payments"), ("PUT", "CreditNotes"), ("GET", "CreditNotes"),
            ("PUT", f"CreditNotes/{cn.credit_note_id}/Allocations")} <= set(paths(pool))
    assert isinstance(sink._ref(current), ExternalRef)


def test_prism_refuses_an_invalid_request(xero_prism: Prism) -> None:
    """The harness really validates: a list where the spec wants an ``Invoices`` object is 400."""
    from xero_python.exceptions import AccountingBadRequestException

    pool = RecordingPool()
    sink = XeroIntegration(settings(api_base=xero_prism.url), http=pool, token=HELD_TOKEN)
    with pytest.raises(AccountingBadRequestException):
        sink.api.create_invoices(sink.tenant, [{"Type": "ACCREC"}])
    (_, _, status, header), = pool.seen
    assert status == 400 and "request" in str(header)
