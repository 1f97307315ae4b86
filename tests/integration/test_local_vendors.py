"""`meterbill run`'s vendors (meterbill/local/vendors.py) without Prism: the stand-ins answer the
official SDKs over real HTTP (header names in lower case, as Prism forwards them), and a vendor
that cannot start is said so, never half-configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import urllib3

from integrations.hubspot import HubSpotIntegration
from integrations.stripe import StripeIntegration
from meterbill.integration.keys import idempotency_key
from meterbill.local import vendors
from meterbill.local.fakes.hubspot import FakeHubSpot
from meterbill.local.fakes.stripe import FakeStripe
from tests.integration import hubspot_support, stripe_support


class LowerCaseHeaders(urllib3.PoolManager):
    """What Prism's proxy does to the SDK's headers on their way to the stand-in."""

    def request(self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().request(method, url, *args, headers={k.lower(): v for k, v in (headers or {}).items()}, **kwargs)


@pytest.fixture
def stand_ins() -> Any:
    started: list[vendors.StandIn] = []

    def serve(fake: Any) -> vendors.StandIn:
        started.append(vendors.StandIn(fake))
        return started[-1]

    yield serve
    for s in started:
        s.stop()


def test_a_stripe_invoice_pushed_over_http_to_the_stand_in_is_kept(stand_ins: Any) -> None:
    fake = FakeStripe()
    base = stand_ins(fake).url
    sink = StripeIntegration(stripe_support.settings(api_base=base))
    doc = stripe_support.invoice("USD", ("8.00", "4.34"))
    ref = sink.push_invoice(doc, sink.upsert_customer(stripe_support.CUSTOMER),
                            idempotency_key("stripe", doc["id"], "push"))
    kept = fake.invoices[ref.id]
    assert kept["metadata"]["meterbill_invoice_id"] == doc["id"] and kept["total"] == 1234 and kept["status"] == "open"
    again = sink.find_invoice(doc, sink.upsert_customer(stripe_support.CUSTOMER))   # state: found, not recreated
    assert again is not None and again.id == ref.id and len(fake.invoices) == 1


def test_hubspot_headers_in_lower_case_still_authenticate(stand_ins: Any) -> None:
    fake = FakeHubSpot()
    sink = HubSpotIntegration(hubspot_support.settings(api_base=stand_ins(fake).url), http=LowerCaseHeaders())
    ref = sink.upsert_customer(stripe_support.CUSTOMER)
    assert ref.id and [c["meterbill_customer_id"] for c in fake.of("companies")] == ["acme"]


def test_a_vendor_without_its_spec_is_left_out_saying_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERBILL_SPECS_DIR", str(tmp_path))
    env: dict[str, str] = {}
    started, skipped = vendors.start_vendors(("stripe", "xero"), env)
    assert started == [] and env == {}
    assert [m.split(":")[0] for m in skipped] == ["stripe", "xero"]
    assert str(tmp_path / "stripe" / "stripe-billing.prism.json") in skipped[0] and "starting without stripe" in skipped[0]


def test_a_vendor_with_its_own_api_base_gets_no_prism(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERBILL_SPECS_DIR", str(tmp_path))
    env = {"METERBILL_STRIPE_API_BASE": "https://api.stripe.com"}
    assert vendors.start_vendors(("stripe", "quickbooks"), env) == ([], [])     # a real account; an unknown vendor
    assert env == {"METERBILL_STRIPE_API_BASE": "https://api.stripe.com"}
