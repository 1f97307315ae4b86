"""The Xero module against an in-process fake of Xero behind the SDK's HTTP boundary
(tests/integration/xero_fake.py): exactly one Xero invoice per meterbill invoice through faults,
key expiry and retries; account codes and tax types per meter; line tax adding up to meterbill's
tax exactly; unit prices with 4 decimals; payment, void, credit note; classification; tokens;
secrets never shown."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from integrations.xero import XeroIntegration
from meterbill.integration.contract import ExternalRef, Permanent, Retryable, Unknown
from meterbill.integration.keys import idempotency_key
from meterbill.integration.registry import REGISTRY, Registry
from tests.integration.dispatch_support import deliver
from tests.integration.stripe_support import CUSTOMER, invoice
from tests.integration.xero_fake import FakeXero
from tests.integration.xero_support import xero, xsink  # noqa: F401 - fixtures
from tests.integration.xero_support import CLIENT_SECRET, HELD_TOKEN, TENANT, settings

INVOICES = r"/api.xro/2.0/Invoices"


def only_invoice(xero: FakeXero) -> dict[str, Any]:
    assert len(xero.invoices) == 1, f"{len(xero.invoices)} Xero invoices"
    return next(iter(xero.invoices.values()))


def push(sink: XeroIntegration, doc: dict[str, Any]) -> tuple[ExternalRef | None, list[Any]]:
    return deliver(sink, doc, CUSTOMER)


# -- the happy path and its shape ----------------------------------------------------------------------


def test_a_final_invoice_becomes_one_authorised_accrec_invoice(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("12.34", "0.66"), tax_percent="19")
    ref, seen = push(xsink, doc)
    inv = only_invoice(xero)
    assert seen == [] and ref is not None and ref.id == inv["InvoiceID"] and ref.number == doc["number"]
    assert inv["Status"] == "AUTHORISED" and inv["Type"] == "ACCREC"
    assert inv["InvoiceNumber"] == doc["number"] and inv["Reference"] == doc["id"]
    assert inv["LineAmountTypes"] == "Exclusive" and inv["CurrencyCode"] == "USD"
    assert [(ln["AccountCode"], ln["TaxType"]) for ln in inv["LineItems"]] == [("200", "OUTPUT2"), ("201", "OUTPUT2")]
    assert inv["Total"] == Decimal(doc["total"]) and inv["TotalTax"] == Decimal(doc["tax_total"])
    assert sum(ln["TaxAmount"] for ln in inv["LineItems"]) == Decimal("2.47")
    created = xero.calls("PUT", INVOICES)[0]
    assert created.query == {"unitdp": "4"}
    assert created.headers["Idempotency-Key"] == f"mb:xero:{doc['id']}:push:v1/create"
    assert created.headers["xero-tenant-id"] == TENANT
    contact = next(iter(xero.contacts.values()))
    assert contact["ContactNumber"] == "acme" and contact["Name"] == "Acme GmbH"
    assert all(r.headers.get("Idempotency-Key") for r in xero.requests if r.method in ("PUT", "POST")
               and "identity" not in r.url)


def test_pushing_again_writes_nothing_even_after_the_keys_are_gone(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice()
    first, _ = push(xsink, doc)
    writes = len([r for r in xero.requests if r.method in ("PUT", "POST") and "identity" not in r.url])
    xero.forget_keys()
    again, _ = push(xsink, doc)
    assert again == first and len(xero.invoices) == 1 and len(xero.contacts) == 1
    assert len([r for r in xero.requests if r.method in ("PUT", "POST") and "identity" not in r.url]) == writes


def test_the_contact_is_found_by_contact_number_and_a_same_named_one_adopted(xero: FakeXero,
                                                                            xsink: XeroIntegration) -> None:
    xero._new_contact({"Name": "Acme GmbH"})                      # made by hand in Xero, no number
    ref = xsink.upsert_customer(CUSTOMER)
    assert len(xero.contacts) == 1 and xero.contacts[ref.id]["ContactNumber"] == "acme"
    assert xsink.upsert_customer(CUSTOMER) == ref


# -- amounts: tax residual, unit prices, currencies ------------------------------------------------------


@pytest.mark.parametrize(("currency", "amounts", "percent"), [
    ("USD", ("0.01", "0.01", "0.01"), "50"),          # 0.015 tax: shares 0.01+0.01+0.01 would be 0.03
    ("JPY", ("333", "333", "334"), "10"),
    ("KWD", ("1.001", "2.002", "3.003"), "7"),
])
def test_line_taxes_add_up_to_meterbills_tax_exactly(xero: FakeXero, xsink: XeroIntegration, currency: str,
                                                     amounts: tuple[str, ...], percent: str) -> None:
    doc = invoice(currency, amounts, tax_percent=percent)
    ref, seen = push(xsink, doc)
    inv = only_invoice(xero)
    assert seen == [] and inv["Status"] == "AUTHORISED"
    assert sum(ln["TaxAmount"] for ln in inv["LineItems"]) == Decimal(doc["tax_total"])
    assert inv["Total"] == Decimal(doc["total"]) and inv["CurrencyCode"] == currency
    assert [ln["LineAmount"] for ln in inv["LineItems"]] == [Decimal(a) for a in amounts]


def test_unit_prices_go_with_four_decimals_and_lines_stay_exact(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("12.34",))
    doc["lines"][0]["quantity"] = "1234"                 # 0.01 per call: exact with 4 decimals
    doc2 = invoice("USD", ("10.00",), number="INV-000002") | {"id": "inv-2"}
    doc2["lines"][0]["quantity"] = "3"                   # 3.3333… per unit: sent as 1 × 10.00
    push(xsink, doc)
    push(xsink, doc2)
    first, second = (xero.invoice_by_number(n)["LineItems"][0] for n in (doc["number"], doc2["number"]))
    assert (first["Quantity"], first["UnitAmount"], first["LineAmount"]) == (1234, Decimal("0.01"), Decimal("12.34"))
    assert (second["Quantity"], second["LineAmount"]) == (1, Decimal("10.00"))
    assert "3 calls" in second["Description"]


def test_tax_inclusive_invoices_are_inclusive_in_xero(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("11.90",))
    doc.update(tax_inclusive=True, taxes=[{"name": "VAT", "percentage": "19", "taxable_amount": "10.00",
                                           "amount": "1.90"}], tax_total="1.90", total="11.90", amount_due="11.90")
    push(xsink, doc)
    inv = only_invoice(xero)
    assert inv["LineAmountTypes"] == "Inclusive" and inv["Total"] == Decimal("11.90")
    assert inv["LineItems"][0]["TaxAmount"] == Decimal("1.90")


def test_prepaid_credits_are_a_negative_untaxed_line(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("20.00",), tax_percent="10", credits="5.00")
    push(xsink, doc)
    inv = only_invoice(xero)
    credit = inv["LineItems"][-1]
    assert (credit["AccountCode"], credit["TaxType"], credit["TaxAmount"]) == ("840", "NONE", Decimal(0))
    assert inv["Total"] == Decimal(doc["amount_due"]) == Decimal("17.00")


def test_an_unmapped_meter_is_a_problem_naming_the_line(xero: FakeXero) -> None:
    sink = XeroIntegration(settings({"meter_0": {"account_code": "200", "tax_type": "OUTPUT2"}}), http=xero)
    doc = invoice("USD", ("1.00", "2.00"))
    problems = sink.validate_invoice(doc)
    assert [p.field for p in problems] == ["lines[1].meter"] and "meter_1" in problems[0].message
    ref, seen = push(sink, doc)
    assert ref is None and isinstance(seen[-1], Permanent) and not xero.invoices


# -- faults: exactly one external invoice ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "500_after", "timeout_before", "timeout_after"])
def test_a_failed_create_then_success_makes_exactly_one_invoice(xero: FakeXero, xsink: XeroIntegration,
                                                                kind: str) -> None:
    xero.fail("PUT", INVOICES, kind)
    doc = invoice()
    ref, seen = push(xsink, doc)
    inv = only_invoice(xero)
    assert [type(c) for c in seen] == [Unknown] and ref is not None and ref.id == inv["InvoiceID"]
    assert inv["Status"] == "AUTHORISED"


def test_after_an_unknown_outcome_and_forgotten_keys_the_lookup_finds_the_first(xero: FakeXero,
                                                                                 xsink: XeroIntegration) -> None:
    xero.fail("PUT", INVOICES, "timeout_after")
    doc = invoice()
    with pytest.raises(Exception) as raised:
        xsink.push_invoice(doc, xsink.upsert_customer(CUSTOMER), idempotency_key("xero", doc["id"], "push"))
    assert isinstance(xsink.classify(raised.value), Unknown)
    xero.forget_keys()                                     # the key cannot save us any more
    found = xsink.find_invoice(doc, ExternalRef("any"))
    assert found is not None and found.id == only_invoice(xero)["InvoiceID"]
    ref, _ = push(xsink, doc)
    assert ref is not None and ref.id == found.id and only_invoice(xero)["Status"] == "AUTHORISED"
    assert len(xero.calls("PUT", INVOICES)) == 1


def test_429_is_retryable_with_retry_after(xero: FakeXero, xsink: XeroIntegration) -> None:
    xero.fail("GET", INVOICES, "429", retry_after="42")
    ref, seen = push(xsink, invoice())
    assert seen == [Retryable(seen[0].reason, 42.0)] and ref is not None


def test_400_is_permanent(xero: FakeXero, xsink: XeroIntegration) -> None:
    xero.fail("PUT", INVOICES, "400")
    ref, seen = push(xsink, invoice())
    assert ref is None and len(seen) == 1 and isinstance(seen[0], Permanent)


def test_a_number_taken_by_another_document_is_permanent(xero: FakeXero, xsink: XeroIntegration) -> None:
    cref = xsink.upsert_customer(CUSTOMER)
    other = invoice() | {"id": "someone-else"}
    xsink.push_invoice(other, cref, "k1")
    ref, seen = push(xsink, invoice())
    assert ref is None and isinstance(seen[0], Permanent) and "number_taken" in seen[0].reason


def test_idempotency_keys_are_deterministic_and_fit_xero(xero: FakeXero) -> None:
    keys = []
    for _ in range(2):
        fake = FakeXero()
        deliver(XeroIntegration(settings(), http=fake), invoice(), CUSTOMER)
        keys.append([r.headers.get("Idempotency-Key") for r in fake.requests if r.method in ("PUT", "POST")
                     and "identity" not in r.url])
    assert keys[0] == keys[1] and all(k and len(k) <= 128 for k in keys[0])


# -- payment, void, credit note ------------------------------------------------------------------------------


def test_a_payment_is_applied_once(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("10.00",))
    ref, _ = push(xsink, doc)
    assert ref is not None
    payment = {"id": "pay_1", "amount": "10.00", "date": "2026-11-05", "reference": "pi_123", "source": "stripe"}
    key = idempotency_key("xero", "pay_1", "payment")
    xsink.record_payment(doc, payment, ref, key)
    xero.forget_keys()
    xsink.record_payment(doc | {"status": "paid"}, payment, ref, key)
    inv = only_invoice(xero)
    assert inv["Status"] == "PAID" and len(inv["Payments"]) == 1
    made = xero.calls("PUT", r"/api.xro/2.0/Payments")                       # PUT: create, Idempotency-Key
    [sent] = [p for m in made for p in m.body["Payments"]]
    assert len(made) == 1 and sent["Account"]["Code"] == "090" and sent["Reference"] == "pi_123"


def test_a_partial_payment_leaves_a_balance(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("10.00",))
    ref, _ = push(xsink, doc)
    assert ref is not None
    xsink.record_payment(doc, {"amount": "4.00", "date": "2026-11-05", "reference": "bank-1"}, ref, "k-pay-1")
    inv = only_invoice(xero)
    assert inv["Status"] == "AUTHORISED" and inv["AmountDue"] == Decimal("6.00")


def test_void_an_unpaid_invoice_and_refuse_a_paid_one(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("10.00",))
    ref, _ = push(xsink, doc)
    assert ref is not None
    xsink.void_invoice(doc, ref, "k-void")
    assert only_invoice(xero)["Status"] == "VOIDED"
    xsink.void_invoice(doc, ref, "k-void")                  # again: nothing to do
    paid = invoice("USD", ("10.00",), number="INV-000002") | {"id": "inv-paid"}
    pref, _ = push(xsink, paid)
    assert pref is not None
    xsink.record_payment(paid, {"amount": "10.00", "date": "2026-11-05", "reference": "r"}, pref, "k-pay")
    with pytest.raises(Exception) as raised:
        xsink.void_invoice(paid, pref, "k-void-2")
    assert isinstance(xsink.classify(raised.value), Permanent)


def test_an_id_alone_is_never_trusted(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice()
    ref, _ = push(xsink, doc)
    assert ref is not None
    with pytest.raises(Exception) as raised:
        xsink.void_invoice(doc | {"id": "another"}, ref, "k")
    assert "wrong_invoice" in xsink.classify(raised.value).reason


def test_a_credit_note_is_mirrored_and_allocated_once(xero: FakeXero, xsink: XeroIntegration) -> None:
    doc = invoice("USD", ("10.00",), tax_percent="10")
    ref, _ = push(xsink, doc)
    assert ref is not None
    note = {"id": "cn-1", "number": "CN-000001", "invoice_id": doc["id"], "invoice_number": doc["number"],
            "currency": "USD", "reason": "order_change", "memo": "goodwill", "subtotal": "2.00", "tax_total": "0.20",
            "tax_inclusive": False, "total": "2.20", "credited_to_invoice": "2.20", "credited_to_balance": "0.00",
            "created_at": "2026-11-06T10:00:00Z"}
    key = idempotency_key("xero", "cn-1", "credit-note")
    first = xsink.push_credit_note(note, ref, key)
    xero.forget_keys()
    again = xsink.push_credit_note(note, ref, key)
    assert first == again and len(xero.credit_notes) == 1
    cn = xero.credit_notes[first.id]
    assert cn["Type"] == "ACCRECCREDIT" and cn["Total"] == Decimal("2.20") and cn["Reference"] == "cn-1"
    assert len(cn["Allocations"]) == 1 and only_invoice(xero)["AmountDue"] == Decimal("8.80")


# -- configuration, tokens, secrets ---------------------------------------------------------------------------


def test_config_problems_name_each_setting() -> None:
    from meterbill.integration.settings import IntegrationSettings

    sink = XeroIntegration(IntegrationSettings("xero", {"grant_type": "refresh_token", "account_codes": "{"}))
    fields = [p.field for p in sink.validate_config(IntegrationSettings("xero", {
        "grant_type": "refresh_token", "account_codes": json.dumps({"m": {"account_code": "200"}})}))]
    assert fields == ["client_id", "client_secret", "tenant_id", "refresh_token", "payment_account_code",
                      "account_codes.m"]
    assert [p.field for p in sink.validate_config(settings())] == []


def test_a_custom_connection_fetches_client_credentials_tokens(xero: FakeXero) -> None:
    saved: list[dict[str, Any]] = []
    sink = XeroIntegration(settings(), http=xero, on_token=saved.append)
    push(sink, invoice())
    assert [t["grant_type"] for t in xero.tokens] == ["client_credentials"]      # one token, reused
    token_call = next(r for r in xero.requests if "identity" in r.url)
    assert token_call.body["client_id"] == "CID0000" and saved[0]["access_token"] == "xat_1"
    api_calls = [r for r in xero.requests if "identity" not in r.url]
    assert {r.headers["Authorization"] for r in api_calls} == {"Bearer xat_1"}


def test_a_refresh_token_is_refreshed_by_the_sdk_and_the_new_one_handed_back(xero: FakeXero) -> None:
    saved: list[dict[str, Any]] = []
    sink = XeroIntegration(settings(grant_type="refresh_token", refresh_token="xrt_0"), http=xero,
                           on_token=saved.append)
    sink.upsert_customer(CUSTOMER)
    assert [t["grant_type"] for t in xero.tokens] == ["refresh_token"]
    assert saved[-1]["refresh_token"] == "xrt_1"                 # rotated: the caller must store it


def test_a_held_token_is_used_as_is(xero: FakeXero) -> None:
    sink = XeroIntegration(settings(), http=xero, token=HELD_TOKEN)
    sink.upsert_customer(CUSTOMER)
    assert xero.tokens == [] and xero.requests[0].headers["Authorization"] == "Bearer xat_held"


def test_secrets_never_show(xero: FakeXero, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = XeroIntegration(settings(), http=xero)
    xero.fail("PUT", INVOICES, "400")
    ref, seen = push(sink, invoice())
    text = " ".join(str(c) for c in seen) + repr(sink._settings) + caplog.text
    assert CLIENT_SECRET not in text


def test_registered_through_its_entry_point() -> None:
    registry = Registry()
    assert "xero" in registry.load_entry_points()
    assert registry.get("xero").factory is XeroIntegration
    built = registry.build("xero", settings())
    assert isinstance(built, XeroIntegration) and REGISTRY is not registry
