"""Issue 8, hardening, through the HTTP API on moto: one amount grammar for every money field
(``money.AmountRule``; bounds and why: docs/decisions.md, "Input limits and the amount grammar").

Plan 'pro' (tests/integration/test_api.py): 49.00 base fee; tokens graduated 0.01 up to 1,000 then
0.005; calls 0.001 each. Customer 'acme' monthly from 2026-10-01; the clock says 2026-11-05."""

# ruff: noqa: F811  (the API fixtures are imported from test_api and used as parameters)
from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import ev
from tests.integration.test_adjustments import close, invoice_for, send
from tests.integration.test_api import ACME, PLAN_PRO, Api, api, catalog, error, events_body  # noqa: F401

BIG = "1" + "0" * 49  # a 50-digit amount
NOV = "2026-11-01T00:00:00Z"


def plan_with(path: str, value: Any, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``plan`` (default PLAN_PRO) with ``value`` at a dotted/indexed ``path``."""
    doc = copy.deepcopy(plan or PLAN_PRO)
    target: Any = doc
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    target[parts[-1]] = value
    return doc


def charge_plan(charge: dict[str, Any]) -> dict[str, Any]:
    return {"currency": "USD", "interval": "month", "charges": [charge]}


# -- the amount grammar ------------------------------------------------------------------
def test_a_base_fee_of_10_to_the_40_is_refused_and_cannot_break_runs_or_the_upcoming_invoice(catalog: Api) -> None:
    err = error(catalog.put("/v1/plans/huge", plan_with("base_fee", "1" + "0" * 40)), 400)
    assert err["field"] == "base_fee" and "41 digits before the decimal point; an amount has at most 12" in err["message"]
    assert catalog.get("/v1/plans/huge").status_code == 404  # nothing stored
    assert catalog.get("/v1/customers/acme/upcoming-invoice").status_code == 200
    assert catalog.billing_run({"as_of": NOV})["errors"] == []


@pytest.mark.parametrize(("path", "field"), [
    ("base_fee", "base_fee"),
    ("minimum_commitment", "minimum_commitment"),
    ("charges[0].min_amount", "charges[0].min_amount"),
    ("charges[0].free_units", "charges[0].free_units"),
    ("charges[0].tiers[0].up_to", "charges[0].tiers[0].up_to"),
    ("charges[0].tiers[1].unit_amount", "charges[0].tiers[1].unit_amount"),
    ("charges[0].tiers[0].flat_amount", "charges[0].tiers[0].flat_amount"),
    ("charges[1].unit_amount", "charges[1].unit_amount"),
])
def test_50_digit_amounts_in_a_plan_are_refused_naming_the_field(catalog: Api, path: str, field: str) -> None:
    err = error(catalog.put("/v1/plans/big", plan_with(path, BIG)), 400)
    assert err["field"] == field, err
    assert catalog.get("/v1/plans/big").status_code == 404


@pytest.mark.parametrize(("charge", "field"), [
    ({"model": "package", "package_size": BIG, "package_amount": "4.00"}, "package_size"),
    ({"model": "package", "package_size": "1000", "package_amount": BIG}, "package_amount"),
    ({"model": "percentage", "rate": BIG}, "rate"),
    ({"model": "percentage", "rate": "2.9", "fixed_amount": BIG}, "fixed_amount"),
    ({"model": "percentage", "rate": "2.9", "free_units_per_total_aggregation": BIG}, "free_units_per_total_aggregation"),
    ({"model": "percentage", "rate": "2.9", "free_units_per_events": BIG}, "free_units_per_events"),
    ({"model": "graduated_percentage", "tiers": [{"up_to": None, "rate": BIG}]}, "tiers[0].rate"),
    ({"model": "matrix", "dimensions": ["region"], "prices": [{"match": {"region": "eu"}, "unit_amount": BIG}]},
     "prices[0].unit_amount"),
    ({"model": "matrix", "dimensions": ["region"], "prices": [{"match": {"region": "eu"}, "unit_amount": "1"}],
      "default_unit_amount": BIG}, "default_unit_amount"),
    ({"model": "time_of_use", "default_unit_amount": "0.1", "windows": [
        {"name": "peak", "days": ["mon"], "from": "08:00", "to": "20:00", "unit_amount": BIG}]}, "windows[0].unit_amount"),
    ({"model": "time_of_use", "default_unit_amount": "0.1", "holidays": ["2026-12-25"], "holiday_unit_amount": BIG,
      "windows": [{"name": "peak", "days": ["mon"], "from": "08:00", "to": "20:00", "unit_amount": "1"}]},
     "holiday_unit_amount"),
])
def test_50_digit_amounts_in_every_charge_model_are_refused(api: Api, charge: dict[str, Any], field: str) -> None:
    api.ok("PUT", "/v1/meters/region_calls", {"event_type": "api.call", "aggregation": "sum", "property": "n",
                                              "group_by": ["region"]})
    err = error(api.put("/v1/plans/big", charge_plan({"meter": "region_calls", **charge})), 400)
    assert err["field"] == f"charges[0].{field}", err


def test_per_event_clamps_follow_the_unit_price_grammar(api: Api) -> None:
    api.ok("PUT", "/v1/meters/payments", {"event_type": "pay", "aggregation": "sum", "property": "amount",
                                          "keep_values": True})
    for key in ("per_event_min", "per_event_max"):
        charge = {"meter": "payments", "model": "percentage", "rate": "2.9", key: BIG}
        assert error(api.put("/v1/plans/p", charge_plan(charge)), 400)["field"] == f"charges[0].{key}"


@pytest.mark.parametrize(("path", "value", "field"), [
    ("base_fee", "49.001", "base_fee"),                       # more decimals than USD has
    ("minimum_commitment", "0.001", "minimum_commitment"),
    ("charges[0].tiers[0].flat_amount", "1.001", "charges[0].tiers[0].flat_amount"),
    ("charges[1].unit_amount", "0.000000000001", "charges[1].unit_amount"),  # 12 decimals
    ("charges[0].tiers[0].up_to", "1000.00000000001", "charges[0].tiers[0].up_to"),
    ("charges[1].unit_amount", "100000", "charges[1].unit_amount"),          # 6 integer digits
])
def test_amounts_beyond_their_decimals_or_digits_are_refused(catalog: Api, path: str, value: str, field: str) -> None:
    assert error(catalog.put("/v1/plans/odd", plan_with(path, value)), 400)["field"] == field


def test_the_bounds_themselves_are_accepted(catalog: Api) -> None:
    plan = plan_with("base_fee", "999999999999.99")
    plan = plan_with("charges[1].unit_amount", "0.00000000001", plan)      # 11 decimals
    plan = plan_with("charges[0].tiers[1].unit_amount", "99999.999999", plan)  # 5 + 6 digits
    plan = plan_with("charges[0].tiers[0].up_to", "9999999999999999.9999999999", plan)
    catalog.ok("PUT", "/v1/plans/edge", plan)


def test_prices_of_one_charge_span_at_most_11_digits(catalog: Api) -> None:
    tiers = [{"up_to": "1000", "unit_amount": "0.000000075"}, {"up_to": None, "unit_amount": "1500"}]
    err = error(catalog.put("/v1/plans/span", plan_with("charges[0].tiers", tiers)), 400)
    assert err["field"] == "charges[0].tiers[1].unit_amount"
    assert "0.000000075" in err["message"] and "11" in err["message"]
    tiers[1]["unit_amount"] = "150"  # 3 + 9 digits: still too many
    assert error(catalog.put("/v1/plans/span", plan_with("charges[0].tiers", tiers)), 400)["field"] \
        == "charges[0].tiers[1].unit_amount"
    tiers[1]["unit_amount"] = "15"   # 2 + 9 = 11
    catalog.ok("PUT", "/v1/plans/span", plan_with("charges[0].tiers", tiers))


def test_price_overrides_follow_the_grammar(catalog: Api) -> None:
    base = {**ACME}
    for overrides, field in [
        ({"base_fee": "1" + "0" * 40}, "price_overrides.base_fee"),
        ({"minimum_commitment": "10.001"}, "price_overrides.minimum_commitment"),
        ({"charges": {"calls": {"unit_amount": BIG}}}, "price_overrides.charges.calls.unit_amount"),
        ({"charges": {"tokens": {"tiers": [{"up_to": None, "unit_amount": BIG}]}}},
         "price_overrides.charges.tokens.tiers[0].unit_amount"),
        ({"charges": {"tokens": {"min_amount": "0.001"}}}, "price_overrides.charges.tokens.min_amount"),
        ({"charges": {"calls": {"display_name": "x" * 201}}}, "price_overrides.charges.calls.display_name"),
    ]:
        err = error(catalog.put("/v1/customers/acme", base | {"price_overrides": overrides}), 400)
        assert err["field"] == field, (overrides, err)
    # the joint span of a charge's prices holds for the merged charge
    over = {"charges": {"tokens": {"tiers": [{"up_to": "10", "unit_amount": "0.000000001"},
                                             {"up_to": None, "unit_amount": "1000"}]}}}
    assert error(catalog.put("/v1/customers/acme", base | {"price_overrides": over}), 400)["field"] \
        == "price_overrides.charges.tokens.tiers[1].unit_amount"


def test_a_simulated_plan_follows_the_grammar(catalog: Api) -> None:
    err = error(catalog.post("/v1/simulations", {"plan": plan_with("base_fee", "1" + "0" * 40)}), 400)
    assert err["field"] == "plan.base_fee"


def test_discounts_grants_thresholds_and_tax_rates_follow_the_grammar(catalog: Api) -> None:
    acme = catalog.ok("GET", "/v1/customers/acme")
    for body, field in [({"type": "fixed", "amount": BIG}, "amount"),
                        ({"type": "percentage", "percentage": "10.0000001"}, "percentage")]:
        assert error(catalog.put("/v1/customers/acme/discounts/d", body), 400)["field"] == field
    assert error(catalog.put("/v1/customers/acme/credit-grants/g", {"amount": BIG}), 400)["field"] == "amount"
    base = {k: acme[k] for k in ("name", "plan", "started_at", "billing_anchor")}
    assert error(catalog.put("/v1/customers/acme", base | {"progressive_threshold": BIG}), 400)["field"] \
        == "progressive_threshold"
    tax = {"name": "VAT", "percentage": "19.0000001", "country": "DE"}
    assert error(catalog.put("/v1/tax-rates/de", tax), 400)["field"] == "percentage"
    # at the bounds
    catalog.ok("PUT", "/v1/customers/acme/credit-grants/g", {"amount": "999999999999.99"})
    catalog.ok("PUT", "/v1/customers/acme/discounts/d", {"type": "percentage", "percentage": "12.345678"})
    catalog.ok("PUT", "/v1/tax-rates/de", tax | {"percentage": "19.123456"})


def test_credit_notes_follow_the_grammar(catalog: Api, drain: Any) -> None:
    send(catalog, drain, ev(1, tokens=10))
    close(catalog, NOV)
    inv = invoice_for(catalog, "2026-10-01T00:00:00Z")
    assert error(catalog.post("/v1/credit-notes", {"invoice": inv["id"], "amount": BIG}), 400)["field"] == "amount"
    assert error(catalog.post("/v1/credit-notes", {"invoice": inv["id"], "amount": "1.001"}), 400)["field"] == "amount"
    lines = [{"line": 0, "amount": "1.001"}]
    assert error(catalog.post("/v1/credit-notes", {"invoice": inv["id"], "lines": lines}), 400)["field"] \
        == "lines[0].amount"
    memo = {"invoice": inv["id"], "amount": "1.00", "memo": "m" * 501}
    assert error(catalog.post("/v1/credit-notes", memo), 400)["field"] == "memo"
