"""The HubSpot module against an in-process fake of HubSpot's CRM behind the SDK's HTTP boundary
(tests/integration/hubspot_fake.py): one company per customer and one invoice per meterbill invoice
through faults and retries (upserts by unique properties, never search-then-create), line items
adding up to what meterbill asks, payment status, void, credit note note, tasks made once,
classification, secrets never shown."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from integrations.hubspot import HubSpotIntegration
from meterbill.integration.contract import ExternalRef, Notifier, Permanent, Retryable, Unknown
from meterbill.integration.keys import idempotency_key
from meterbill.integration.registry import Registry
from tests.integration.dispatch_support import deliver
from tests.integration.hubspot_fake import FakeHubSpot
from tests.integration.hubspot_support import hsink, hubspot  # noqa: F401 - fixtures
from tests.integration.hubspot_support import TOKEN, settings
from tests.integration.stripe_support import CUSTOMER, invoice

UPSERT_INVOICES = r"/crm/v3/objects/invoices/batch/upsert"


def only(hubspot: FakeHubSpot, kind: str) -> dict[str, Any]:
    found = hubspot.objects.get(kind, {})
    assert len(found) == 1, f"{len(found)} HubSpot {kind}"
    return next(iter(found.values()))


def pushed(hsink: HubSpotIntegration, doc: dict[str, Any]) -> ExternalRef:
    ref, seen = deliver(hsink, doc, CUSTOMER)
    assert ref is not None, seen
    return ref


# -- the happy path and its shape ----------------------------------------------------------------------


def test_a_final_invoice_becomes_one_open_invoice_on_the_company(hubspot: FakeHubSpot, hsink: HubSpotIntegration
                                                                 ) -> None:
    doc = invoice("USD", ("12.34", "0.66"), tax_percent="19")
    ref = pushed(hsink, doc)
    inv = only(hubspot, "invoices")
    company_id = next(iter(hubspot.objects["companies"]))
    assert only(hubspot, "companies") == {"name": "Acme GmbH", "meterbill_customer_id": "acme"}
    assert inv["hs_invoice_status"] == "open" and inv["hs_currency"] == "USD"
    assert inv["meterbill_invoice_id"] == doc["id"] and inv["meterbill_invoice_number"] == doc["number"]
    assert (inv["hs_invoice_date"], inv["hs_due_date"]) == ("2026-11-01", "2026-11-15")
    assert hubspot.linked("invoices", ref.id, "companies") == {company_id}
    assert hubspot.linked("invoices", ref.id, "contacts") == set(hubspot.objects["contacts"])
    lines = [hubspot.objects["line_items"][i] for i in sorted(hubspot.linked("invoices", ref.id, "line_items"))]
    assert [(ln["quantity"], ln["price"]) for ln in lines] == [("1", "12.34"), ("1", "0.66"), ("1", "2.47")]
    assert sum(Decimal(ln["price"]) for ln in lines) == Decimal(doc["amount_due"])
    assert lines[0]["name"] == "Meter 0 · 100 calls · 2026-10-01 to 2026-11-01"
    assert not hubspot.calls("POST", r".*/search")                     # never search-then-create


def test_pushing_again_writes_nothing(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    doc = invoice()
    first = pushed(hsink, doc)
    writes = len([r for r in hubspot.requests if r.method != "GET"])
    again = pushed(hsink, doc)
    assert again == first and len(hubspot.objects["invoices"]) == 1
    assert len([r for r in hubspot.requests if r.method != "GET"]) == writes + 1    # the company upsert only


def test_credits_discounts_and_inclusive_taxes_add_up(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    doc = invoice("JPY", ("1000",), tax_percent="10", credits="300")
    ref = pushed(hsink, doc)
    lines = [hubspot.objects["line_items"][i] for i in hubspot.linked("invoices", ref.id, "line_items")]
    assert sorted(Decimal(ln["price"]) for ln in lines) == [Decimal(-300), Decimal(100), Decimal(1000)]
    assert only(hubspot, "invoices")["meterbill_amount_due"] == "800"


def test_an_invoice_without_a_contact_email_is_a_problem_naming_the_field(hsink: HubSpotIntegration) -> None:
    doc = invoice()
    doc["customer"]["email"] = None
    assert [p.field for p in hsink.validate_invoice(doc)] == ["customer.email"]
    assert [p.field for p in hsink.validate_invoice(doc | {"number": None})] == ["status"]


# -- faults: exactly one external invoice ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "500_after", "timeout_before", "timeout_after"])
def test_a_failed_create_then_success_makes_exactly_one_invoice(hubspot: FakeHubSpot, hsink: HubSpotIntegration,
                                                                kind: str) -> None:
    hubspot.fail("POST", UPSERT_INVOICES, kind)
    ref, seen = deliver(hsink, invoice(), CUSTOMER)
    inv = only(hubspot, "invoices")
    assert [type(c) for c in seen] == [Unknown] and ref is not None
    assert inv["hs_invoice_status"] == "open" and len(hubspot.of("line_items")) == 1


def test_after_an_unknown_outcome_the_lookup_finds_the_first_invoice(hubspot: FakeHubSpot,
                                                                      hsink: HubSpotIntegration) -> None:
    hubspot.fail("POST", UPSERT_INVOICES, "timeout_after")
    doc = invoice()
    cref = hsink.upsert_customer(CUSTOMER)
    with pytest.raises(Exception) as raised:
        hsink.push_invoice(doc, cref, idempotency_key("hubspot", doc["id"], "push"))
    assert isinstance(hsink.classify(raised.value), Unknown)
    found = hsink.find_invoice(doc, cref)
    assert found is not None and found.id == next(iter(hubspot.objects["invoices"]))
    assert hsink.push_invoice(doc, cref, "k").id == found.id and len(hubspot.objects["invoices"]) == 1


def test_a_timeout_on_the_company_upsert_is_unknown_and_still_one_company(hubspot: FakeHubSpot,
                                                                           hsink: HubSpotIntegration) -> None:
    hubspot.fail("POST", r"/crm/v3/objects/companies/batch/upsert", "timeout_after")
    ref, seen = deliver(hsink, invoice(), CUSTOMER)
    assert [type(c) for c in seen] == [Unknown] and ref is not None and len(hubspot.of("companies")) == 1


def test_429_is_retryable_with_retry_after(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    hubspot.fail("PATCH", r"/crm/v3/objects/invoices/\d+", "429", retry_after="10")
    ref, seen = deliver(hsink, invoice(), CUSTOMER)
    assert seen == [Retryable(seen[0].reason, 10.0)] and ref is not None
    assert only(hubspot, "invoices")["hs_invoice_status"] == "open"


def test_a_4xx_is_permanent(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    hubspot.fail("POST", UPSERT_INVOICES, "400")
    ref, seen = deliver(hsink, invoice(), CUSTOMER)
    assert ref is None and len(seen) == 1 and isinstance(seen[0], Permanent) and "400" in seen[0].reason


def test_a_refused_token_is_permanent_configuration() -> None:
    sink = HubSpotIntegration(settings(access_token="pat-na1-wrong"), http=FakeHubSpot())
    with pytest.raises(Exception) as raised:
        sink.upsert_customer(CUSTOMER)
    found = sink.classify(raised.value)
    assert isinstance(found, Permanent) and found.reason.startswith("configuration:")
    assert "pat-na1-wrong" not in found.reason


# -- payment status, void, credit note, tasks --------------------------------------------------------------


def test_payment_status_follows_meterbill(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    doc = invoice("USD", ("10.00",))
    ref = pushed(hsink, doc)
    hsink.record_payment(doc, {"amount": "4.00", "date": "2026-11-05", "reference": "bank"}, ref, "k1")
    assert only(hubspot, "invoices")["meterbill_payment_status"] == "partially_paid"
    hsink.record_payment(doc | {"status": "paid"}, {"amount": "6.00", "date": "2026-11-06"}, ref, "k2")
    inv = only(hubspot, "invoices")
    assert inv["meterbill_payment_status"] == "paid" and inv["meterbill_last_payment_date"] == "2026-11-06"


def test_void_is_mirrored_once(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    doc = invoice()
    ref = pushed(hsink, doc)
    hsink.void_invoice(doc, ref, "k")
    hsink.void_invoice(doc, ref, "k")
    inv = only(hubspot, "invoices")
    assert (inv["hs_invoice_status"], inv["meterbill_payment_status"]) == ("voided", "void")
    assert len(hubspot.calls("PATCH")) == 2                      # open, then voided once


def test_an_id_alone_is_never_trusted(hsink: HubSpotIntegration) -> None:
    doc = invoice()
    ref = pushed(hsink, doc)
    with pytest.raises(Exception) as raised:
        hsink.record_payment(doc | {"id": "another"}, {"amount": "1"}, ref, "k")
    assert "wrong_invoice" in hsink.classify(raised.value).reason


@pytest.mark.parametrize(("kind", "subject"), [("payment_failed", "Payment failed: invoice INV-000001 (12.34 USD)"),
                                               ("overdue", "Overdue: invoice INV-000001 (12.34 USD, due 2026-11-15)"),
                                               ("reminder", "Reminder 2: invoice INV-000001 (12.34 USD, due "
                                                            "2026-11-15)")])
def test_a_notice_is_a_task_on_the_company_made_once(hubspot: FakeHubSpot, hsink: HubSpotIntegration, kind: str,
                                                     subject: str) -> None:
    doc = invoice()
    ref = pushed(hsink, doc)
    key = idempotency_key("hubspot", doc["id"], kind, 2)
    first = hsink.notify(doc, ref, {"kind": kind, "step": 2, "message": "Please follow up"}, key)
    again = hsink.notify(doc, ref, {"kind": kind, "step": 2, "message": "Please follow up"}, key)
    task = only(hubspot, "tasks")
    company_id = next(iter(hubspot.objects["companies"]))
    assert first == again and first is not None and hubspot.linked("tasks", first.id, "companies") == {company_id}
    assert task["hs_task_subject"] == subject and task["hs_task_status"] == "NOT_STARTED"
    assert task["hs_task_body"].startswith("Please follow up") and key in task["hs_task_body"]
    status = only(hubspot, "invoices")["meterbill_payment_status"]
    assert status == (kind if kind != "reminder" else "open")
    hsink.notify(doc, ref, {"kind": kind, "step": 3}, idempotency_key("hubspot", doc["id"], kind, 3))
    assert len(hubspot.of("tasks")) == 2                         # another step, another task


def test_a_timeout_creating_a_task_then_retry_makes_one_task(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    doc = invoice()
    ref = pushed(hsink, doc)
    hubspot.fail("POST", r"/crm/v3/objects/tasks", "timeout_after")
    with pytest.raises(Exception) as raised:
        hsink.notify(doc, ref, {"kind": "overdue"}, "mb:hubspot:x:overdue:v1")
    assert isinstance(hsink.classify(raised.value), Unknown)
    hsink.notify(doc, ref, {"kind": "overdue"}, "mb:hubspot:x:overdue:v1")
    assert len(hubspot.of("tasks")) == 1


def test_a_credit_note_becomes_one_note_on_the_company(hubspot: FakeHubSpot, hsink: HubSpotIntegration) -> None:
    doc = invoice("USD", ("10.00",))
    ref = pushed(hsink, doc)
    note = {"id": "cn-1", "number": "CN-000001", "invoice_id": doc["id"], "invoice_number": doc["number"],
            "customer_id": "acme", "currency": "USD", "total": "3.00", "reason": "order_change", "memo": "goodwill",
            "created_at": "2026-11-06T10:00:00Z"}
    first = hsink.push_credit_note(note, ref, "mb:hubspot:cn-1:credit-note:v1")
    assert hsink.push_credit_note(note, ref, "mb:hubspot:cn-1:credit-note:v1") == first
    body = only(hubspot, "notes")["hs_note_body"]
    assert body.startswith("Credit note CN-000001 for invoice INV-000001: 3.00 USD (order_change: goodwill)")


# -- registration, configuration, secrets --------------------------------------------------------------------


def test_registered_through_its_entry_point_as_a_notifier() -> None:
    registry = Registry()
    assert "hubspot" in registry.load_entry_points()
    plugin = registry.get("hubspot")
    assert plugin.factory is HubSpotIntegration and plugin.notifier and not plugin.payment_source
    assert isinstance(registry.build("hubspot", settings()), Notifier)
    assert registry.get("stripe").notifier is True      # Stripe: its own reminder e-mail (send_invoice)


def test_config_problems_name_each_setting() -> None:
    from meterbill.integration.settings import IntegrationSettings

    sink = HubSpotIntegration(settings())
    found = sink.validate_config(IntegrationSettings("hubspot", {"api_base": "localhost:4010", "task_owner_id": "x"}))
    assert [p.field for p in found] == ["access_token", "api_base", "task_owner_id"]


def test_the_token_never_shows(hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = HubSpotIntegration(settings(), http=hubspot)
    hubspot.fail("POST", UPSERT_INVOICES, "400")
    _, seen = deliver(sink, invoice(), CUSTOMER)
    assert TOKEN not in " ".join(map(str, seen)) + repr(sink._settings) + caplog.text
