"""Stripe webhooks: payloads signed exactly as Stripe signs them (HMAC-SHA256 computed here),
verified by the SDK inside the plugin; events mapped to meterbill invoices by metadata; status
only moves forward."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from integrations.stripe import StripeIntegration
from meterbill.integration.contract import Ignored, PaymentEvent
from meterbill.integration.errors import InvalidWebhook
from meterbill.integration.payments import advance
from tests.integration.stripe_fake import FakeStripe
from tests.integration.stripe_support import fake, sink  # noqa: F401 - fixtures
from tests.integration.stripe_support import WEBHOOK_SECRET, event, sign

MB_ID = "in_ee30267f8530f78e08fa"


def stripe_invoice(**changes: Any) -> dict[str, Any]:
    return {"id": "in_1Stripe", "object": "invoice", "currency": "usd", "amount_due": 1234, "amount_paid": 1234,
            "status": "paid", "metadata": {"meterbill_invoice_id": MB_ID}, **changes}


def receive(sink: StripeIntegration, body: bytes, header: str | None = None) -> PaymentEvent | Ignored:
    return sink.parse_webhook(body, {"Stripe-Signature": header if header is not None else sign(body)})


@pytest.mark.parametrize(("type_", "status"), [
    ("invoice.paid", "paid"), ("invoice.payment_failed", "payment_failed"),
    ("invoice.payment_action_required", "action_required"), ("invoice.marked_uncollectible", "uncollectible"),
    ("invoice.voided", "void"), ("invoice.finalized", "open"),
])
def test_invoice_events_map_to_the_meterbill_invoice(sink: StripeIntegration, type_: str, status: str) -> None:
    got = receive(sink, event(type_, stripe_invoice(), event_id="evt_9"))
    assert isinstance(got, PaymentEvent)
    assert (got.event_id, got.meterbill_invoice_id, got.status, got.external_id) == ("evt_9", MB_ID, status, "in_1Stripe")
    assert got.currency == "USD" and got.amount == Decimal("12.34") and got.occurred_at == "2026-10-26T07:33:20Z"


def test_finalization_failed_carries_the_error(sink: StripeIntegration) -> None:
    obj = stripe_invoice(status="draft", last_finalization_error={"message": "customer tax location invalid"})
    got = receive(sink, event("invoice.finalization_failed", obj))
    assert isinstance(got, PaymentEvent) and got.status is None and got.flag == "finalization_failed"
    assert got.detail == "customer tax location invalid"


def test_a_header_with_two_signatures_one_valid_passes(sink: StripeIntegration) -> None:
    body = event("invoice.paid", stripe_invoice())
    good = sign(body)
    t, v1 = good.split(",")
    rotated = f"{t},v1={'0' * 64},{v1}"                   # secret rotation: any matching v1 passes
    assert isinstance(receive(sink, body, rotated), PaymentEvent)


@pytest.mark.parametrize("tamper", ["bad_signature", "wrong_secret", "old_timestamp", "re_serialized", "no_header",
                                    "garbage"])
def test_an_unverifiable_webhook_is_refused(sink: StripeIntegration, tamper: str) -> None:
    body = event("invoice.paid", stripe_invoice())
    header = sign(body)
    if tamper == "bad_signature":
        header = header[:-4] + "0000"
    elif tamper == "wrong_secret":
        header = sign(body, secret="whsec_other")
    elif tamper == "old_timestamp":
        header = sign(body, t=int(time.time()) - 600)          # outside the 300 s tolerance
    elif tamper == "re_serialized":
        body = json.dumps(json.loads(body), indent=1).encode()  # same JSON, other bytes
    elif tamper == "no_header":
        header = ""
    elif tamper == "garbage":
        header = "nonsense"
    with pytest.raises(InvalidWebhook) as err:
        receive(sink, body, header)
    assert WEBHOOK_SECRET not in str(err.value)


def test_unknown_types_and_foreign_invoices_are_ignored(sink: StripeIntegration) -> None:
    unknown = receive(sink, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert isinstance(unknown, Ignored) and unknown.reason == "event type not handled"
    foreign = receive(sink, event("invoice.paid", stripe_invoice(metadata={})))
    assert isinstance(foreign, Ignored) and "not meterbill's" in foreign.reason


def test_duplicate_and_out_of_order_events_never_move_paid_back(sink: StripeIntegration) -> None:
    paid = event("invoice.paid", stripe_invoice(), event_id="evt_paid")
    failed = event("invoice.payment_failed", stripe_invoice(status="open", amount_paid=0), event_id="evt_failed")
    seen: set[str] = set()
    status: str | None = "open"
    for body in (paid, paid, failed, paid):                # a duplicate, then a late failure of an earlier try
        got = receive(sink, body)
        assert isinstance(got, PaymentEvent) and got.status is not None
        if got.event_id in seen:
            continue                                        # de-duplicated by event id
        seen.add(got.event_id)
        status = advance(status, got.status)
    assert status == "paid" and seen == {"evt_paid", "evt_failed"}


def test_refunds_and_disputes_are_mapped_through_the_invoice_payments(fake: FakeStripe, sink: StripeIntegration) -> None:
    fake.customers["cus_1"] = {"id": "cus_1", "balance": 0, "metadata": {}}
    fake.invoices["in_1Stripe"] = stripe_invoice(customer="cus_1", items=[])
    fake.pay("in_1Stripe", payment_intent="pi_42")
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_42", "currency": "usd", "amount_refunded": 500}
    refund = receive(sink, event("charge.refunded", charge))
    assert isinstance(refund, PaymentEvent)
    assert (refund.meterbill_invoice_id, refund.flag, refund.amount, refund.status) == (MB_ID, "refund", Decimal("5"), None)
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": "pi_42", "currency": "usd", "amount": 1234,
               "status": "needs_response"}
    opened = receive(sink, event("charge.dispute.created", dispute))
    assert isinstance(opened, PaymentEvent) and (opened.flag, opened.detail) == ("dispute_opened", "needs_response")
    stranger = receive(sink, event("charge.refunded", charge | {"payment_intent": "pi_unknown"}))
    assert isinstance(stranger, Ignored)
