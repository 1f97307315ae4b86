"""Builders shared by the Stripe workflow, webhook and contract tests: real invoice documents
(``domain.invoices.build_invoice``), a plugin on the fake, a dispatcher-like retry loop, and
payloads signed the way Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from integrations.stripe import StripeIntegration
from meterbill.domain.invoices import build_invoice, invoice_id
from meterbill.domain.periods import Period
from meterbill.domain.rating import Line, Rated
from meterbill.domain.taxes import TaxLine
from meterbill.integration.contract import ExternalRef, Permanent, Unknown
from meterbill.integration.keys import idempotency_key
from meterbill.integration.settings import IntegrationSettings

API_KEY = "sk_test_51FakeKeyNeverLogged0000"
WEBHOOK_SECRET = "whsec_test_secret_never_logged"
START = datetime(2026, 10, 1, tzinfo=timezone.utc)
CUSTOMER = {"id": "acme", "name": "Acme GmbH", "email": "billing@acme.test", "payment_terms_days": 14}


def settings(**extra: str) -> IntegrationSettings:
    return IntegrationSettings("stripe", {"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET,
                                          "max_network_retries": "0", **extra})


def plugin(http_client: Any = None, **extra: str) -> StripeIntegration:
    return StripeIntegration(settings(**extra), http_client=http_client)


@pytest.fixture
def fake() -> Any:
    """A fresh fake Stripe (tests import this fixture with ``sink``)."""
    from tests.integration.stripe_fake import FakeStripe

    return FakeStripe()


@pytest.fixture
def sink(fake: Any) -> StripeIntegration:
    """The Stripe plugin on the fake."""
    return plugin(fake)


def invoice(currency: str = "USD", amounts: tuple[str, ...] = ("12.34",), *, tax_percent: str | None = None,
            number: str = "INV-000001", customer: dict[str, Any] | None = None, segments: int = 1,
            credits: str | None = None) -> dict[str, Any]:
    """A final invoice document as the close builds it: one usage line per amount (per meter),
    each split into ``segments`` consecutive parts of the period when > 1."""
    cust = customer or CUSTOMER
    period = Period(START, START + timedelta(days=31), 0)
    lines = []
    for m, amount in enumerate(amounts):
        for s in range(segments):
            covers = Period(START + timedelta(hours=s), START + timedelta(hours=s + 1), 0) if segments > 1 else None
            lines.append(Line("usage", f"Meter {m}", Decimal(amount), Decimal(amount), meter=f"meter_{m}",
                              quantity=Decimal(100 + s), unit="calls", covers=covers))
    subtotal = sum((ln.amount for ln in lines), Decimal(0))
    taxes = []
    if tax_percent is not None:
        tax = (subtotal * Decimal(tax_percent) / 100).quantize(Decimal(1).scaleb(-{"JPY": 0, "KWD": 3}.get(currency, 2)))
        taxes = [TaxLine("VAT", Decimal(tax_percent), subtotal, tax)]
    doc = build_invoice(invoice_id=invoice_id(cust["id"], period), number=number, customer=cust, plan_code="std",
                        plan_version=1, period=period, rated=Rated(currency, tuple(lines), subtotal, subtotal),
                        created_at="2026-11-01T00:05:00Z", taxes=taxes)
    if credits is not None:   # prepaid credit drawn from the total (as the close records it)
        doc["credits"] = [{"grant": "g1", "description": "welcome credit", "amount": credits}]
        doc["credits_applied"] = credits
        doc["amount_due"] = format(Decimal(doc["total"]) - Decimal(credits), "f")
    return doc


def deliver(sink: StripeIntegration, doc: dict[str, Any], customer: dict[str, Any] | None = None,
            attempts: int = 5) -> tuple[ExternalRef | None, list[Any]]:
    """What the dispatcher will do: retry Retryable / Unknown (Unknown: look up first), stop on
    Permanent. Returns the ref and every classification seen."""
    seen: list[Any] = []
    for _ in range(attempts):
        try:
            cref = sink.upsert_customer(customer or CUSTOMER)
            if seen and isinstance(seen[-1], Unknown):
                sink.find_invoice(doc, cref)      # look-up-before-create (push_invoice does it too)
            return sink.push_invoice(doc, cref, idempotency_key("stripe", doc["id"], "push")), seen
        except Exception as exc:  # noqa: BLE001 - classified like the dispatcher does
            seen.append(sink.classify(exc))
            if isinstance(seen[-1], Permanent):
                return None, seen
    return None, seen


def sign(payload: str | bytes, secret: str = WEBHOOK_SECRET, t: int | None = None) -> str:
    """The ``Stripe-Signature`` header: ``t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``."""
    import time

    t = int(time.time()) if t is None else t
    body = payload.decode() if isinstance(payload, bytes) else payload
    mac = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(type_: str, obj: dict[str, Any], event_id: str = "evt_1", created: int = 1_793_000_000) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "created": created,
                       "api_version": "2026-10-28.endive", "livemode": False, "pending_webhooks": 1,
                       "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}},
                      separators=(",", ":")).encode()
