"""Every call the HubSpot module makes, sent by the official SDK (hubspot-api-client) to Prism
serving HubSpot's CRM specs (../shared/specs/hubspot): each request validates (no
``sl-violations`` request entry, 2xx).

Prism is stateless and answers with the spec's examples (every object is id "512", with none of
our properties): reading the invoice by ``meterbill_invoice_id`` finds nothing of ours, so the
module writes everything — the shape we want checked. Steps that first check the HubSpot invoice
is meterbill's (void, payment, notices) would rightly refuse Prism's canned invoice, so their
request step is called directly. Tasks are not in the shared spec set (Companies, Contacts,
Deals, Invoices, Line Items, Notes, Associations): the task body is the same
``SimplePublicObjectInputForCreate`` as a note's and is checked here through the notes path;
the tasks path itself is covered by the workflow tests only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.hubspot import HubSpotIntegration
from integrations.hubspot import mapping as hs
from integrations.hubspot.plugin import NOTE_TO_COMPANY
from meterbill.integration.keys import idempotency_key
from tests.contract.conftest import Prism, RecordingPool
from tests.integration.hubspot_support import settings
from tests.integration.stripe_support import CUSTOMER, invoice


@pytest.fixture
def recorded(hubspot_prism: Prism) -> Iterator[tuple[HubSpotIntegration, RecordingPool]]:
    pool = RecordingPool()
    yield HubSpotIntegration(settings(api_base=hubspot_prism.url), http=pool), pool
    assert not pool.refused(), f"requests Prism refused: {pool.refused()}"


def paths(pool: RecordingPool) -> list[tuple[str, str]]:
    return [(m, u.split("?")[0].split("127.0.0.1")[1].split("/", 1)[1]) for m, u, _, _ in pool.seen]


def test_push_an_invoice(recorded: tuple[HubSpotIntegration, RecordingPool]) -> None:
    sink, pool = recorded
    doc = invoice("USD", ("12.34", "0.66"), tax_percent="19", credits="1.00")
    cref = sink.upsert_customer(CUSTOMER)
    assert sink.find_invoice(doc, cref) is None                    # Prism's canned invoice is not ours
    ref = sink.push_invoice(doc, cref, idempotency_key("hubspot", doc["id"], "push"))
    assert ref.id == "512"
    seen = paths(pool)
    assert {("POST", f"crm/v3/objects/{t}/batch/upsert") for t in ("companies", "contacts", "invoices", "line_items")} \
        <= set(seen)
    assert ("POST", "crm/v4/associations/invoices/line_items/batch/associate/default") in seen
    assert [p for p in seen if p[0] == "PATCH"] == [("PATCH", "crm/v3/objects/invoices/string")]  # the upsert's example id
    assert not [p for p in seen if p[1].endswith("/search")]


def test_status_updates_notes_and_the_lookups_behind_them(recorded: tuple[HubSpotIntegration, RecordingPool]) -> None:
    sink, pool = recorded
    sink._update("512", {"hs_invoice_status": "voided", hs.STATUS: "void"})
    sink._update("512", {hs.STATUS: "paid", "meterbill_last_payment_amount": "10.00",
                         "meterbill_last_payment_date": "2026-11-05"})
    company = sink._company("acme")
    subject, body, _ = hs.task(invoice(), {"kind": "overdue"}, "[meterbill:mb:hubspot:x:overdue:v1]")
    sink._activity("notes", NOTE_TO_COMPANY, company, "mb:hubspot:cn-1:credit-note:v1",
                   {"hs_note_body": f"{subject}\n\n{body}"}, "hs_note_body", "2026-11-16T00:00:00Z")
    seen = paths(pool)
    assert ("GET", "crm/v3/objects/companies/acme") in seen
    assert ("GET", f"crm/v4/objects/companies/{company}/associations/notes") in seen
    assert {("POST", "crm/v3/objects/notes/batch/read"), ("POST", "crm/v3/objects/notes")} <= set(seen)
    assert [p for p in seen if p[0] == "PATCH"] == [("PATCH", "crm/v3/objects/invoices/512")] * 2


def test_prism_refuses_an_invalid_request(hubspot_prism: Prism) -> None:
    """The harness really validates: a create without the spec's required ``associations`` is 422."""
    from hubspot.crm.objects import SimplePublicObjectInputForCreate

    pool = RecordingPool()
    sink = HubSpotIntegration(settings(api_base=hubspot_prism.url), http=pool)
    with pytest.raises(Exception) as raised:
        sink._api("objects").create("notes", SimplePublicObjectInputForCreate(properties={"hs_note_body": "x"}))
    assert getattr(raised.value, "status", None) == 422
    (_, _, status, header), = pool.seen
    assert status == 422 and "associations" in str(header)
