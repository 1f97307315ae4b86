"""Per-customer price overrides and mid-period plan changes, on moto through the real services
(and the HTTP API for the error cases). Catalog: tests.conftest.standard_catalog — plan 'pro'
49.00/month, tokens graduated (first 1000 at 0.01, then 0.005), calls 0.001 each."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import ev, standard_catalog
from tests.integration.test_api import ACME, METER_CALLS, METER_TOKENS, PLAN_PRO, Api, api, error  # noqa: F401

OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
CUSTOMER = {"name": "Acme", "plan": "pro", "started_at": OCT, "billing_anchor": OCT}
MAX = {"currency": "USD", "interval": "month", "base_fee": "99.00", "name": "Max", "charges": [
    {"meter": "tokens", "model": "per_unit", "unit_amount": "0.002"},
    {"meter": "calls", "model": "per_unit", "unit_amount": "0.0005"}]}


@pytest.fixture
def catalog(container: Any) -> Any:
    c = standard_catalog(container)
    c.put_plan("max", MAX)
    return c


def send(container: Any, drain: Any, *events: dict[str, Any]) -> None:
    res = container.ingest.ingest(json.dumps({"events": list(events)}), None)
    assert res.accepted == len(events) and res.errors == []
    drain()


def invoice(container: Any, start: str = OCT) -> dict[str, Any]:
    found = [i for i in container.billing_store.list_invoices("acme", 100, None)[0] if i["period"]["start"] == start]
    assert len(found) == 1
    return found[0]


def lines(inv: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(ln.get("plan"), ln.get("meter") or ln["type"], ln.get("quantity"), ln["amount"], ln["period"]["start"],
             ln["period"]["end"]) for ln in inv["lines"]]


def test_customer_with_overrides_is_billed_at_the_override_price(container: Any, catalog: Any, drain: Any) -> None:
    # new terms for an existing customer take effect now unless dated: here from the subscription's start
    catalog.put_customer("acme", {**CUSTOMER, "plan_effective_at": OCT, "price_overrides": {
        "base_fee": "39.00", "charges": {"calls": {"unit_amount": "0.01"}}}})
    send(container, drain, *[ev(i, tokens=300) for i in range(5)])
    container.billing.run(datetime.fromisoformat(NOV))
    inv = invoice(container)
    # 39.00 (override, not 49.00); tokens 1000 x 0.01 + 500 x 0.005 = 12.50; calls 5 x 0.01 (override) = 0.05
    assert [(ln["amount"], ln.get("override", False)) for ln in inv["lines"]] == [
        ("39.00", True), ("12.50", False), ("0.05", True)]
    assert inv["subtotal"] == "51.55"
    # overrides survive a new plan version: applied on top of it (base fee 59 in the plan, still 39 here)
    catalog.put_plan("pro", {**PLAN_PRO, "base_fee": "59.00"})
    assert catalog.get_customer("acme")["price_overrides"]["base_fee"] == "39.00"
    container.clock.advance(days=30)
    container.billing.run(datetime.fromisoformat("2026-12-01T00:00:00+00:00"))
    assert invoice(container, NOV)["lines"][0]["amount"] == "39.00"


def test_plan_update_that_breaks_an_override_is_reported_not_mispriced(container: Any, catalog: Any) -> None:
    catalog.put_customer("acme", {**CUSTOMER, "plan_effective_at": OCT,
                                  "price_overrides": {"charges": {"calls": {"unit_amount": "0.01"}}}})
    catalog.put_plan("pro", {**PLAN_PRO, "charges": PLAN_PRO["charges"][:1]})  # no longer charges calls
    summary = container.billing.run(datetime.fromisoformat(NOV))
    assert summary.invoices == [] and summary.drafts == []
    assert [e["customer"] for e in summary.errors] == ["acme"]
    assert "price_overrides.charges.calls" in summary.errors[0]["error"]
    assert "does not charge meter 'calls'" in summary.errors[0]["error"]


def test_mid_month_upgrade_splits_usage_and_prorates_base_fees(container: Any, catalog: Any, drain: Any) -> None:
    send(container, drain, *[ev(f"a{i}", ts="2026-10-10T10:00:00Z", tokens=400) for i in range(3)],
         ev("a3", ts="2026-10-16T11:59:59Z", tokens=0))
    doc = catalog.put_customer("acme", {**CUSTOMER, "plan": "max", "plan_effective_at": "2026-10-16T12:00:00Z"})
    assert doc["plan_effective_at"] == "2026-10-16T12:00:00Z"
    assert [(e["plan"], e["from"]) for e in doc["plan_history"]] == [("pro", OCT), ("max", "2026-10-16T12:00:00Z")]
    send(container, drain, *[ev(f"b{i}", ts="2026-10-20T08:00:00Z", tokens=1000) for i in range(2)],
         ev("b2", ts="2026-10-16T12:00:00Z", tokens=0))
    container.billing.run(datetime.fromisoformat(NOV))
    inv = invoice(container)
    half = "2026-10-16T12:00:00Z"  # 15.5 of October's 31 days on each side: proration 1/2
    assert lines(inv) == [
        ("pro", "base_fee", None, "24.50", OCT, half),          # 49.00 x 1/2
        ("pro", "tokens", "1200", "11.00", OCT, half),          # 1000 x 0.01 + 200 x 0.005
        ("pro", "calls", "4", "0.00", OCT, half),               # 4 x 0.001 = 0.004
        ("max", "base_fee", None, "49.50", half, NOV),          # 99.00 x 1/2
        ("max", "tokens", "2000", "4.00", half, NOV),           # 2000 x 0.002
        ("max", "calls", "3", "0.00", half, NOV)]               # 3 x 0.0005 = 0.0015
    assert (inv["plan"], inv["subtotal"], inv["total"]) == ("max", "89.00", "89.00")


def test_change_takes_effect_on_the_next_bucket_boundary(container: Any, catalog: Any, drain: Any) -> None:
    doc = catalog.put_customer("acme", {**CUSTOMER, "plan": "max", "plan_effective_at": "2026-10-16T12:07:00Z"})
    assert doc["plan_effective_at"] == "2026-10-16T12:15:00Z"
    send(container, drain, ev(1, ts="2026-10-16T12:10:00Z", tokens=10),  # its bucket starts 12:00: old plan
         ev(2, ts="2026-10-16T12:15:00Z", tokens=20))
    container.billing.run(datetime.fromisoformat(NOV))
    usage = [(p, m, q) for p, m, q, *_ in lines(invoice(container)) if m == "tokens"]
    assert usage == [("pro", "tokens", "10"), ("max", "tokens", "20")]


def test_upcoming_invoice_shows_the_split_and_earlier_period_keeps_its_plan(container: Any, catalog: Any,
                                                                            drain: Any) -> None:
    # clock: 2026-11-05T12:00Z; October has ended but is not invoiced yet
    catalog.put_customer("acme", {**CUSTOMER, "plan": "max", "plan_effective_at": "2026-11-03T00:00:00Z"})
    send(container, drain, ev(1, ts="2026-11-02T10:00:00Z", tokens=100), ev(2, ts="2026-11-04T10:00:00Z", tokens=500))
    up = container.billing.upcoming("acme")
    assert [(ln["plan"], ln.get("meter") or ln["type"], ln["amount"]) for ln in up["lines"]] == [
        ("pro", "base_fee", "3.27"),   # 49.00 x 2/30 = 3.266…
        ("pro", "tokens", "1.00"),     # 100 x 0.01
        ("pro", "calls", "0.00"),
        ("max", "base_fee", "92.40"),  # 99.00 x 28/30
        ("max", "tokens", "1.00"),     # 500 x 0.002
        ("max", "calls", "0.00")]
    assert (up["plan"], up["total"]) == ("max", "97.67")
    container.billing.run(datetime.fromisoformat(NOV))
    october = invoice(container)
    assert (october["plan"], [ln["amount"] for ln in october["lines"]]) == ("pro", ["49.00", "0.00", "0.00"])


def test_several_changes_in_one_period(container: Any, catalog: Any) -> None:
    catalog.put_customer("acme", {**CUSTOMER, "plan": "max", "plan_effective_at": "2026-10-11T00:00:00Z"})
    catalog.put_customer("acme", {**CUSTOMER, "plan": "pro", "plan_effective_at": "2026-10-21T00:00:00Z",
                                  "price_overrides": {"base_fee": "31.00"}})
    container.billing.run(datetime.fromisoformat(NOV))
    fees = [(ln["plan"], ln["amount"], ln.get("override", False)) for ln in invoice(container)["lines"]
            if ln["type"] == "base_fee"]
    # 49 x 10/31 = 15.806… ; 99 x 10/31 = 31.935… ; 31 x 11/31 = 11.00 (override)
    assert fees == [("pro", "15.81", False), ("max", "31.94", False), ("pro", "11.00", True)]



def test_change_after_the_fee_was_billed_in_advance_credits_the_unused_part(container: Any, catalog: Any) -> None:
    catalog.put_plan("pre", {"currency": "USD", "base_fee": "30.00", "base_fee_timing": "advance"})
    catalog.put_plan("pre2", {"currency": "USD", "base_fee": "60.00", "base_fee_timing": "advance"})
    catalog.put_customer("acme", {**CUSTOMER, "plan": "pre", "plan_effective_at": OCT})
    container.billing.run(datetime.fromisoformat(NOV))
    assert [ln["amount"] for ln in invoice(container)["lines"]] == ["30.00", "30.00"]  # October + November ahead
    catalog.put_customer("acme", {**CUSTOMER, "plan": "pre2", "plan_effective_at": "2026-11-16T00:00:00Z"})
    container.clock.advance(days=26)
    container.billing.run(datetime.fromisoformat("2026-12-01T00:00:00+00:00"))
    nov = invoice(container, NOV)
    assert [(ln["plan"], ln["amount"], ln["period"]["start"][:10], ln["period"]["end"][:10]) for ln in nov["lines"]] == [
        ("pre", "-15.00", "2026-11-16", "2026-12-01"),   # 30.00 x 15/30 billed ahead under 'pre', not used
        ("pre2", "30.00", "2026-11-16", "2026-12-01"),   # 60.00 x 15/30
        ("pre2", "60.00", "2026-12-01", "2027-01-01")]   # December in advance, under the plan at the period end
    assert (nov["plan"], nov["subtotal"]) == ("pre2", "75.00")


# -- through the HTTP API --------------------------------------------------------------------
@pytest.fixture
def http(api: Api) -> Api:  # noqa: F811
    api.ok("PUT", "/v1/meters/tokens", METER_TOKENS)
    api.ok("PUT", "/v1/meters/calls", METER_CALLS)
    api.ok("PUT", "/v1/plans/pro", PLAN_PRO)
    api.ok("PUT", "/v1/customers/acme", ACME)
    return api


def test_plan_change_through_the_api_returns_the_effective_instant(http: Api) -> None:
    http.ok("PUT", "/v1/plans/max", MAX)
    got = http.ok("PUT", "/v1/customers/acme", {**ACME, "plan": "max", "plan_effective_at": "2026-10-20T09:50:00Z",
                                                 "price_overrides": {"charges": {"calls": {"unit_amount": "0.0001"}}}})
    assert (got["plan"], got["plan_effective_at"]) == ("max", "2026-10-20T10:00:00Z")
    assert got["plan_history"][-1] == {"plan": "max", "from": "2026-10-20T10:00:00Z",
                                       "price_overrides": {"charges": {"calls": {"unit_amount": "0.0001"}}}}


@pytest.mark.parametrize(("plan", "status", "needle"), [
    ({**MAX, "currency": "EUR"}, 409, "currency"),
    ({**MAX, "interval": "year"}, 409, "not supported yet"),
    ({**MAX, "tax_inclusive": True}, 409, "tax"),
])
def test_plan_change_to_an_incompatible_plan_is_409_naming_plan(http: Api, plan: dict[str, Any], status: int,
                                                               needle: str) -> None:
    http.ok("PUT", "/v1/plans/other", plan)
    err = error(http.put("/v1/customers/acme", {**ACME, "plan": "other"}), status)
    assert err["field"] == "plan" and needle in err["message"]
    assert http.ok("GET", "/v1/customers/acme")["plan"] == "pro"


@pytest.mark.parametrize(("body", "field"), [
    ({"plan": "max", "plan_effective_at": "2026-09-30T00:00:00Z"}, "plan_effective_at"),   # before started_at
    ({"plan": "max", "plan_effective_at": "2026-10-31T00:00:00Z"}, "plan_effective_at"),   # October is invoiced
    ({"plan": "max", "plan_effective_at": "soon"}, "plan_effective_at"),
    ({"price_overrides": {"charges": {"calls": {"unit_amount": "free"}}}}, "price_overrides.charges.calls.unit_amount"),
    ({"price_overrides": {"charges": {"calls": {"unit_amount": 0.0001}}}}, "price_overrides.charges.calls.unit_amount"),
    ({"price_overrides": {"charges": {"storage": {"unit_amount": "1"}}}}, "price_overrides.charges.storage"),
    ({"price_overrides": {"tax_inclusive": True}}, "price_overrides.tax_inclusive"),
])
def test_invalid_change_names_the_field(http: Api, body: dict[str, Any], field: str) -> None:
    http.ok("PUT", "/v1/plans/max", MAX)
    assert http.billing_run({"as_of": NOV})["invoices_created"]  # October invoiced
    err = error(http.put("/v1/customers/acme", {**ACME, **body}), 400)
    assert err["field"] == field
    assert http.ok("GET", "/v1/customers/acme")["plan_history"] == [{"plan": "pro", "from": OCT,
                                                                     "price_overrides": {}}]
