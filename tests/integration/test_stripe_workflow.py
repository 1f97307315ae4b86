"""The Stripe module's workflow against an in-process fake of Stripe behind the SDK's HTTP
client (tests/integration/stripe_fake.py): exactly one Stripe invoice per meterbill invoice
through faults, key expiry and retries; exact minor units; roll-up; totals checked; void, credit
note, payment; classification; secrets never shown."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
import stripe

from integrations.stripe import StripeIntegration, currency
from integrations.stripe.errors import CreateFailed
from integrations.stripe.plugin import STRIPE_API_VERSION
from meterbill.integration.contract import ExternalRef, Permanent, Retryable, Unknown
from meterbill.integration.errors import ConfigError, PermanentFailure
from meterbill.integration.keys import idempotency_key
from meterbill.integration.registry import REGISTRY, Registry
from tests.integration.stripe_fake import FakeStripe
from tests.integration.stripe_support import fake, sink  # noqa: F401 - fixtures
from tests.integration.stripe_support import API_KEY, CUSTOMER, WEBHOOK_SECRET, deliver, invoice, plugin, settings

INVOICES = r"/v1/invoices"
ITEMS = r"/v1/invoiceitems"


def only_invoice(fake: FakeStripe) -> dict[str, Any]:
    assert len(fake.invoices) == 1, f"{len(fake.invoices)} Stripe invoices"
    return next(iter(fake.invoices.values()))


def item_amounts(fake: FakeStripe, inv: dict[str, Any]) -> list[int]:
    return [fake.items[i]["amount"] for i in inv["items"]]


# -- the happy path and its shape ----------------------------------------------------------------------


def test_a_final_invoice_becomes_one_finalized_stripe_invoice(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice("USD", ("12.34", "0.66"), tax_percent="19")
    ref, seen = deliver(sink, doc)
    inv = only_invoice(fake)
    assert seen == [] and ref == ExternalRef(inv["id"], inv["number"], inv["hosted_invoice_url"])
    assert inv["status"] == "open" and inv["auto_advance"] is True          # Stripe collects from here
    created = next(p for m, path, p, _ in fake.requests if (m, path) == ("POST", "/v1/invoices"))
    assert created["pending_invoice_items_behavior"] == "exclude" and created["auto_advance"] == "false"
    assert created["collection_method"] == "send_invoice" and created["days_until_due"] == "14"
    assert created["metadata"]["meterbill_invoice_id"] == doc["id"]
    assert item_amounts(fake, inv) == [1234, 66, 247]                          # VAT: 19 % of 13.00
    assert inv["total"] == currency.to_minor(doc["amount_due"], "USD")
    descriptions = [fake.items[i]["description"] for i in inv["items"]]
    assert descriptions[0] == "Meter 0 · 100 calls · 2026-10-01 to 2026-11-01"
    assert descriptions[2] == "VAT 19% on 13.00 USD"
    assert all(key and key.startswith(f"mb:stripe:") for m, _, _, key in fake.requests if m == "POST")
    assert {fake.customers[inv["customer"]]["metadata"]["meterbill_customer_id"]} == {"acme"}


def test_pushing_again_writes_nothing(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice()
    first, _ = deliver(sink, doc)
    writes = len(fake.writes())
    fake.forget_keys()                        # even after Stripe pruned every key
    again, _ = deliver(sink, doc)
    assert again == first and len(fake.writes()) == writes and len(fake.invoices) == 1


def test_charge_automatically_has_no_due_days(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice() | {"collection_method": "charge_automatically"}
    deliver(sink, doc)
    created = next(p for m, path, p, _ in fake.requests if (m, path) == ("POST", "/v1/invoices"))
    assert created["collection_method"] == "charge_automatically" and "days_until_due" not in created


# -- faults: exactly one external invoice ----------------------------------------------------------------


def test_a_500_then_success_makes_exactly_one_invoice(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", INVOICES, "500")        # saved under the key and replayed by Stripe for 24 h
    ref, seen = deliver(sink, invoice())
    assert [type(c) for c in seen] == [Unknown] and ref is not None
    assert only_invoice(fake)["status"] == "open"
    replay = [r for r in fake.requests if r[1] == "/v1/invoices" and r[0] == "POST"]
    assert len(replay) == 3 and replay[1][3] == replay[0][3]      # same key: the saved 500 comes back…
    assert replay[2][3].startswith(replay[0][3] + "/after/")       # …then a key derived from its request id


def test_a_500_after_stripe_created_the_invoice_is_found_not_repeated(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", INVOICES, "500_after")
    ref, seen = deliver(sink, invoice())
    assert [type(c) for c in seen] == [Unknown] and ref is not None
    assert only_invoice(fake)["status"] == "open"


def test_a_timeout_on_create_then_success_makes_exactly_one_invoice(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", INVOICES, "timeout_after")          # Stripe created it; the response was lost
    ref, seen = deliver(sink, invoice())
    assert [type(c) for c in seen] == [Unknown]
    assert ref is not None and only_invoice(fake)["id"] == ref.id


def test_a_timeout_on_an_item_resumes_the_draft_without_a_second_item(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", ITEMS, "timeout_after")
    doc = invoice("USD", ("1.00", "2.00", "3.00"))
    ref, seen = deliver(sink, doc)
    assert [type(c) for c in seen] == [Unknown] and ref is not None
    assert item_amounts(fake, only_invoice(fake)) == [100, 200, 300]


def test_an_expired_key_and_a_retried_create_find_the_first_invoice(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", r"/v1/invoices/[^/]+/finalize", "timeout_before")
    ref, seen = deliver(sink, invoice(), attempts=1)
    assert ref is None and [type(c) for c in seen] == [Retryable]
    fake.forget_keys()                                     # > 24 h later: Stripe pruned the keys
    ref, seen = deliver(sink, invoice())
    inv = only_invoice(fake)                               # the look-up found the draft: no second invoice
    assert ref is not None and ref.id == inv["id"] and inv["status"] == "open"
    assert item_amounts(fake, inv) == [1234]               # and its items were not added twice


def test_429_is_retryable_after_its_retry_after(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", INVOICES, "429", retry_after="7")
    ref, seen = deliver(sink, invoice())
    assert seen == [Retryable(seen[0].reason, 7.0)] and "RateLimitError (HTTP 429)" in seen[0].reason
    assert ref is not None and len(fake.invoices) == 1


def test_400_is_permanent_and_not_retried(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.fail("POST", INVOICES, "400")
    ref, seen = deliver(sink, invoice())
    assert ref is None and [type(c) for c in seen] == [Permanent] and "HTTP 400" in seen[0].reason
    assert len(fake.writes(INVOICES)) == 1


@pytest.mark.parametrize(("error", "expected"), [
    (stripe.AuthenticationError("Invalid API Key provided: " + API_KEY, http_status=401), Permanent),
    (stripe.PermissionError("not allowed", http_status=403), Permanent),
    (stripe.InvalidRequestError("No such invoice", "id", http_status=404), Permanent),
    (stripe.IdempotencyError("Keys for idempotent requests…", http_status=400), Permanent),
    (stripe.RateLimitError("lock timeout", http_status=429, code="lock_timeout"), Retryable),
    (stripe.APIError("boom", http_status=503), Retryable),
    (CreateFailed("invoice", stripe.APIError("boom", http_status=502)), Unknown),
    (stripe.APIConnectionError("timed out"), Retryable),
    (CreateFailed("invoice", stripe.APIConnectionError("timed out")), Unknown),
    (stripe.APIError("conflict", http_status=409), Retryable),
    (PermanentFailure("totals_mismatch", "differs"), Permanent),
])
def test_classify(sink: StripeIntegration, error: BaseException, expected: type) -> None:
    found = sink.classify(error)
    assert type(found) is expected
    assert API_KEY not in found.reason                       # redacted even if Stripe echoed it


# -- amounts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "amounts", "minor"), [
    ("USD", ("12.34", "0.01"), [1234, 1]),
    ("JPY", ("1500", "7"), [1500, 7]),                        # zero-decimal: not x100
    ("KWD", ("1.235", "3.885"), [1235, 3885]),                # three-decimal, total 5.120 ends in 0
    ("ISK", ("500",), [50000]),                               # two-decimal in the API, whole krónur
])
def test_amounts_are_exact_in_stripe_minor_units(fake: FakeStripe, sink: StripeIntegration, code: str,
                                                  amounts: tuple[str, ...], minor: list[int]) -> None:
    ref, seen = deliver(sink, invoice(code, amounts))
    inv = only_invoice(fake)
    assert seen == [] and ref is not None
    assert item_amounts(fake, inv) == minor and inv["currency"] == code.lower()
    assert inv["amount_due"] == sum(minor)


def test_a_kwd_total_stripe_cannot_charge_is_refused_before_any_write(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice("KWD", ("5.124",))
    assert [p.field for p in sink.validate_invoice(doc)] == ["amount_due"]
    ref, seen = deliver(sink, doc)
    assert ref is None and "multiple of 0.010 KWD" in seen[0].reason and not fake.invoices


@pytest.mark.parametrize(("code", "amount", "field"), [
    ("MGA", "12.50", "lines[0].amount"),        # zero-decimal in Stripe, 2 decimals in ISO
    ("CLF", "1.0000", "currency"),              # not a Stripe currency
])
def test_amounts_stripe_cannot_hold_are_problems(sink: StripeIntegration, code: str, amount: str, field: str) -> None:
    assert [p.field for p in sink.validate_invoice(invoice(code, (amount,)))][:1] == [field]


def test_a_251_line_invoice_is_rolled_up_per_charge(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice("USD", ("0.10", "0.25"), segments=126, tax_percent="10")   # 252 lines + 1 tax item
    assert len(doc["lines"]) == 252
    ref, seen = deliver(sink, doc)
    inv = only_invoice(fake)
    assert seen == [] and ref is not None
    assert item_amounts(fake, inv) == [1260, 3150, 441]
    first = fake.items[inv["items"][0]]["description"]
    assert first.startswith("Meter 0 · 126 lines · ") and "calls" in first
    assert inv["total"] == currency.to_minor(doc["total"], "USD")


def test_more_charges_than_stripe_takes_even_rolled_up_is_a_problem(sink: StripeIntegration) -> None:
    doc = invoice("USD", tuple("1.00" for _ in range(251)))
    assert [p.field for p in sink.validate_invoice(doc)] == ["lines"]


def test_drafts_are_refused(sink: StripeIntegration) -> None:
    doc = invoice() | {"status": "draft", "number": None}
    assert [p.field for p in sink.validate_invoice(doc)] == ["status"]


# -- Stripe's figures must be meterbill's ------------------------------------------------------------------


def test_a_stripe_customer_balance_is_flagged_and_nothing_is_finalized(fake: FakeStripe, sink: StripeIntegration) -> None:
    cref = sink.upsert_customer(CUSTOMER)
    fake.customers[cref.id]["balance"] = -500                    # credit Stripe would apply
    ref, seen = deliver(sink, invoice())
    assert ref is None and seen[0].reason.startswith("customer_balance:")
    assert only_invoice(fake)["status"] == "draft"


def test_a_below_minimum_invoice_stripe_marks_paid_is_flagged(fake: FakeStripe, sink: StripeIntegration) -> None:
    ref, seen = deliver(sink, invoice("USD", ("0.30",)))
    assert ref is None and seen[0].reason.startswith("amount_due_mismatch:")


def test_prepaid_credits_drawn_are_a_negative_item(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice("USD", ("20.00",), credits="5.00")
    ref, _ = deliver(sink, doc)
    inv = only_invoice(fake)
    assert item_amounts(fake, inv) == [2000, -500] and inv["amount_due"] == 1500 and ref is not None


def test_a_draft_whose_items_differ_is_not_finalized(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice()
    fake.fail("POST", r"/v1/invoices/[^/]+/finalize", "timeout_before")
    assert deliver(sink, doc, attempts=1)[0] is None
    draft = only_invoice(fake)
    fake.items[draft["items"][0]]["amount"] += 1           # someone edited the draft's item in the dashboard
    ref, seen = deliver(sink, doc)
    assert ref is None and seen[-1].reason.startswith("totals_mismatch:") and draft["status"] == "draft"


# -- void, credit note, payment -----------------------------------------------------------------------------


def test_void_credit_note_and_payment(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice("USD", ("100.00",))
    ref, _ = deliver(sink, doc)
    assert ref is not None
    note = {"id": "cn_1", "number": "CN-000001", "invoice_id": doc["id"], "currency": "USD", "total": "30.00",
            "reason": "duplicate", "memo": None}
    cn = sink.push_credit_note(note, ref, idempotency_key("stripe", "cn_1", "credit-note"))
    assert sink.push_credit_note(note, ref, "other-key") == cn               # looked up, not repeated
    stripe_note = fake.credit_notes[cn.id]
    assert (stripe_note["amount"], stripe_note["out_of_band_amount"], stripe_note["reason"]) == (3000, 0, "duplicate")
    partial = sink.record_payment(doc, {"amount": "10.00"}, ref, idempotency_key("stripe", "pay1", "payment"))
    assert partial.id == ref.id and fake.invoices[ref.id]["status"] == "open"     # partial: nothing sent
    sink.record_payment(doc | {"status": "paid"}, {"amount": "70.00"}, ref, idempotency_key("stripe", "p2", "payment"))
    assert fake.invoices[ref.id]["status"] == "paid" and fake.invoices[ref.id]["paid_out_of_band"]
    late = {**note, "id": "cn_2", "number": "CN-000002", "total": "20.00"}
    sink.push_credit_note(late, ref, idempotency_key("stripe", "cn_2", "credit-note"))
    assert [c["out_of_band_amount"] for c in fake.credit_notes.values()] == [0, 2000]  # paid: meterbill's balance
    with pytest.raises(PermanentFailure, match="paid: credit it, not void"):
        sink.void_invoice(doc, ref, idempotency_key("stripe", doc["id"], "void"))


def test_void_an_open_invoice_and_never_by_id_alone(fake: FakeStripe, sink: StripeIntegration) -> None:
    doc = invoice()
    ref, _ = deliver(sink, doc)
    assert ref is not None
    with pytest.raises(PermanentFailure, match="is not meterbill's"):
        sink.void_invoice(doc | {"id": "in_someone_else"}, ref, "k")
    sink.void_invoice(doc, ref, idempotency_key("stripe", doc["id"], "void"))
    assert fake.invoices[ref.id]["status"] == "void"
    assert sink.void_invoice(doc, ref, "k2").id == ref.id                  # voiding twice: nothing sent
    state = sink.fetch_invoice_state(ref.id)
    assert (state.status, state.meterbill_invoice_id, state.total) == ("void", doc["id"], Decimal("12.34"))


def test_a_customer_is_found_by_its_meterbill_id_and_updated(fake: FakeStripe, sink: StripeIntegration) -> None:
    first = sink.upsert_customer(CUSTOMER)
    renamed = CUSTOMER | {"name": "Acme AG"}
    assert sink.upsert_customer(renamed) == first
    assert sink.upsert_customer(renamed | {"integrations": {"stripe": {"id": first.id}}}) == first
    assert len(fake.customers) == 1 and fake.customers[first.id]["name"] == "Acme AG"
    other = sink.upsert_customer({"id": "globex", "name": "Globex", "email": None})
    assert other != first and len(fake.customers) == 2


# -- configuration and secrets ----------------------------------------------------------------------------


def test_the_plugin_registers_by_entry_point_and_validates_its_settings() -> None:
    registry = Registry()
    assert "stripe" in registry.load_entry_points()
    assert registry.get("stripe").payment_source
    with pytest.raises(ConfigError) as err:
        registry.build("stripe", settings(api_key="pk_live_wrong", api_base="ftp://x", collection_method="cash"))
    assert [p.split(":")[0] for p in err.value.problems] == ["api_key", "api_base", "collection_method"]
    assert "pk_live_wrong" not in str(err.value)
    assert isinstance(registry.build("stripe", settings()), StripeIntegration)
    assert REGISTRY is not registry


def test_the_pinned_api_version_is_the_sdks() -> None:
    assert STRIPE_API_VERSION == stripe.api_version, "SDK upgraded: re-check payload shapes, then bump the pin"


def test_secrets_never_reach_a_log_line_or_an_error(fake: FakeStripe, caplog: pytest.LogCaptureFixture) -> None:
    sink = plugin(fake)
    with caplog.at_level(logging.DEBUG):
        deliver(sink, invoice())
        fake.fail("POST", INVOICES, "400")
        _, seen = deliver(sink, invoice("USD", ("1.00",), number="INV-000002") | {"id": "in_other"})
        logging.getLogger("meterbill").info("sink %r settings %s", sink, settings())
    texts = [caplog.text, repr(sink.classify(ConfigError("stripe", ["x"]))), *map(repr, seen), repr(settings())]
    for text in texts:
        assert API_KEY not in text and WEBHOOK_SECRET not in text
