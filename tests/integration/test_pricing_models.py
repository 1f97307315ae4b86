"""Charge models that need more than a quantity, through the real flow: events -> buckets ->
close -> invoice lines with their breakdown; and the plan checks that need the meter."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from meterbill.domain.errors import InvalidField

OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"


def send(container: Any, *events: dict[str, Any]) -> None:
    res = container.ingest.ingest(json.dumps({"events": list(events)}), None)
    assert res.errors == [], res.errors


def test_matrix_and_time_of_use_on_an_invoice(container: Any, drain: Any) -> None:
    c = container.catalog
    c.put_meter("vm_hours", {"event_type": "vm", "aggregation": "sum", "property": "hours", "group_by": ["region"]})
    c.put_meter("kwh", {"event_type": "power", "aggregation": "sum", "property": "kwh"})
    c.put_plan("infra", {"currency": "EUR", "interval": "month", "charges": [
        {"meter": "vm_hours", "model": "matrix", "dimensions": ["region"],
         "prices": [{"match": {"region": "eu"}, "unit_amount": "0.12"}], "default_unit_amount": "0.10"},
        {"meter": "kwh", "model": "time_of_use", "default_unit_amount": "0.08",
         "windows": [{"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00",
                      "unit_amount": "0.20"}]}]})
    c.put_customer("plant", {"name": "Plant", "plan": "infra", "started_at": OCT, "billing_anchor": OCT,
                             "timezone": "Europe/Berlin"})
    send(container,
         {"id": "v1", "customer": "plant", "type": "vm", "timestamp": "2026-10-05T10:00:00Z",
          "properties": {"hours": 100, "region": "eu"}},
         {"id": "v2", "customer": "plant", "type": "vm", "timestamp": "2026-10-06T10:00:00Z",
          "properties": {"hours": 50, "region": "us"}},
         # Mon 2026-10-05 07:30 UTC = 09:30 Berlin (CEST): peak
         {"id": "p1", "customer": "plant", "type": "power", "timestamp": "2026-10-05T07:30:00Z",
          "properties": {"kwh": 10}},
         # Mon 2026-10-05 18:30 UTC = 20:30 Berlin: off-peak
         {"id": "p2", "customer": "plant", "type": "power", "timestamp": "2026-10-05T18:30:00Z",
          "properties": {"kwh": 10}},
         # Sun 2026-10-25, the day clocks go back: 11:00 UTC = 12:00 CET, weekend: off-peak
         {"id": "p3", "customer": "plant", "type": "power", "timestamp": "2026-10-25T11:00:00Z",
          "properties": {"kwh": 5}})
    drain()
    # the anchor 00:00Z is 02:00 in Berlin; periods keep that local time, so after the change
    # back to CET the next boundary is 01:00Z
    container.billing.run(datetime.fromisoformat("2026-11-02T00:00:00+00:00"))
    inv = container.billing_store.list_invoices("plant", 10, None)[0][0]
    lines = {ln["meter"]: ln for ln in inv["lines"]}
    assert inv["period"] == {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"}
    assert lines["vm_hours"]["amount"] == "17.00"  # 100 x 0.12 + 50 x 0.10 (default)
    assert sorted((p["label"], p["amount"]) for p in lines["vm_hours"]["parts"]) == [
        ("region=eu", "12.00"), ("region=us", "5.00")]
    assert lines["kwh"]["amount"] == "3.20"  # 10 x 0.20 peak + 15 x 0.08 other
    assert inv["total"] == "20.20"


def test_percentage_free_events_are_the_periods_first_events(container: Any, drain: Any) -> None:
    # Lago's percentage example: 1.2 % + $0.10 per transaction, the first 3 transactions free;
    # $200, $100, $100 then $50 -> only the last pays: 1.2 % of 50 + 0.10 = 0.70. Sent out of
    # order: which events are first is decided by their timestamps, through the stored buckets.
    c = container.catalog
    c.put_meter("payments", {"event_type": "payment", "aggregation": "sum", "property": "amount"})
    c.put_plan("pay", {"currency": "USD", "interval": "month", "charges": [
        {"meter": "payments", "model": "percentage", "rate": "1.2", "fixed_amount": "0.10",
         "free_units_per_events": "3"}]})
    c.put_customer("shop", {"name": "Shop", "plan": "pay", "started_at": OCT, "billing_anchor": OCT})
    send(container, *({"id": f"t{i}", "customer": "shop", "type": "payment", "timestamp": ts,
                       "properties": {"amount": amount}} for i, (ts, amount) in enumerate([
        ("2026-10-20T09:00:00Z", 50), ("2026-10-02T09:00:00Z", 200), ("2026-10-03T09:00:00Z", 100),
        ("2026-10-03T18:00:00Z", 100)])))
    drain()
    container.billing.run(datetime.fromisoformat("2026-11-02T00:00:00+00:00"))
    inv = container.billing_store.list_invoices("shop", 10, None)[0][0]
    (line,) = inv["lines"]
    assert line["quantity"] == "450" and line["amount"] == "0.70"
    assert [p["label"] for p in line["parts"]] == ["1.2% of 50 (first 3 events free: 400)", "0.10 x 1 events (3 free)"]


def test_graduated_percentage_on_an_invoice(container: Any, drain: Any) -> None:
    # Lago's graduated percentage example: $500, $550 and $4,000 over tiers 1 % + $200 up to 1,000,
    # 2 % + $300 up to 10,000, 3 % + $400 above: $205 + $306 + $80 = $591 for the period.
    c = container.catalog
    c.put_meter("volume_usd", {"event_type": "payment", "aggregation": "sum", "property": "amount"})
    c.put_plan("fintech", {"currency": "USD", "interval": "month", "charges": [
        {"meter": "volume_usd", "model": "graduated_percentage", "tiers": [
            {"up_to": "1000", "rate": "1", "flat_amount": "200"}, {"up_to": "10000", "rate": "2", "flat_amount": "300"},
            {"up_to": None, "rate": "3", "flat_amount": "400"}]}]})
    c.put_customer("psp", {"name": "PSP", "plan": "fintech", "started_at": OCT, "billing_anchor": OCT})
    send(container, *({"id": f"g{i}", "customer": "psp", "type": "payment", "timestamp": f"2026-10-0{i + 1}T12:00:00Z",
                       "properties": {"amount": amount}} for i, amount in enumerate([500, 550, 4000])))
    drain()
    container.billing.run(datetime.fromisoformat("2026-11-02T00:00:00+00:00"))
    inv = container.billing_store.list_invoices("psp", 10, None)[0][0]
    (line,) = inv["lines"]
    assert (line["quantity"], line["amount"], inv["total"]) == ("5050", "591.00", "591.00")
    assert [(t["rate"], t["units"], t["amount"]) for t in line["tiers"]] == [
        ("1", "1000", "210.00"), ("2", "4050", "381.00")]


def test_graduated_percentage_plan_through_the_api(container: Any) -> None:
    from aws_lambda_powertools.event_handler import HttpResolverLocal

    from meterbill.api.app import build_app
    from tests.integration.test_api import SECRETS, Api  # the same HTTP driver and keys

    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    api = Api(build_app(HttpResolverLocal, lambda: container), container)
    api.ok("PUT", "/v1/meters/volume_usd", {"event_type": "payment", "aggregation": "sum", "property": "amount"})
    tiers = [{"up_to": "1000", "rate": "1", "flat_amount": "200"}, {"up_to": None, "rate": "2.5"}]
    api.ok("PUT", "/v1/plans/fintech", {"currency": "USD", "charges": [
        {"meter": "volume_usd", "model": "graduated_percentage", "tiers": tiers}]})
    assert api.ok("GET", "/v1/plans/fintech")["charges"][0]["tiers"] == tiers
    resp = api.request("PUT", "/v1/plans/bad", json_body={"currency": "USD", "charges": [
        {"meter": "volume_usd", "model": "graduated_percentage", "tiers": [{"up_to": None, "flat_amount": "1"}]}]})
    assert resp.status_code in (400, 422) and "rate" in resp.text
    schemas = api.ok("GET", "/v1/openapi.json", key=None)["components"]["schemas"]
    assert "rate" in json.dumps(schemas)


@pytest.mark.parametrize(("charge", "field"), [
    ({"meter": "peak", "model": "time_of_use", "default_unit_amount": "1",
      "windows": [{"name": "day", "days": ["mon"], "from": "08:00", "to": "20:00", "unit_amount": "2"}]},
     "charges[0].model"),
    ({"meter": "vm", "model": "matrix", "dimensions": ["zone"], "prices": [
        {"match": {"zone": "a"}, "unit_amount": "1"}], "default_unit_amount": "1"}, "charges[0].dimensions"),
    ({"meter": "vm", "model": "percentage", "rate": "2.9", "per_event_min": "0.50"}, "charges[0].per_event_min"),
    ({"meter": "peak", "model": "graduated_percentage", "tiers": [{"up_to": None, "rate": "1"}]}, "charges[0].model"),
])
def test_plan_rejects_charges_the_meter_cannot_support(container: Any, charge: dict[str, Any], field: str) -> None:
    container.catalog.put_meter("peak", {"event_type": "x", "aggregation": "max", "property": "kw"})
    container.catalog.put_meter("vm", {"event_type": "vm", "aggregation": "sum", "property": "h",
                                       "group_by": ["region"]})
    with pytest.raises(InvalidField) as err:
        container.catalog.put_plan("p", {"currency": "USD", "charges": [charge]})
    assert err.value.field == field
