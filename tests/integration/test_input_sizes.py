"""Issue 8, hardening, through the HTTP API on moto: sizes of every free-text field, metadata,
list and whole document a client stores (``domain/limits.py``), far below DynamoDB's 400 KB item.

Plan 'pro' (tests/integration/test_api.py): 49.00 base fee; tokens graduated 0.01 up to 1,000 then
0.005; calls 0.001 each. Customer 'acme' monthly from 2026-10-01; the clock says 2026-11-05."""

# ruff: noqa: F811  (the API fixtures are imported from test_api and used as parameters)
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.test_api import ACME, Api, api, catalog, error  # noqa: F401
from tests.integration.test_input_limits import plan_with


# -- sizes -------------------------------------------------------------------------------
def test_a_huge_meter_name_is_refused_before_storage(api: Api) -> None:
    meter = {"event_type": "api.call", "aggregation": "count", "name": "n" * 500_000}
    assert error(api.put("/v1/meters/m", meter), 413)["field"] == "body"   # the HTTP layer's body limit
    assert error(api.put("/v1/meters/m", meter | {"name": "n" * 200_000}), 400)["field"] == "name"
    assert error(api.put("/v1/meters/m", meter | {"name": "n" * 201}), 400)["field"] == "name"
    api.ok("PUT", "/v1/meters/m", meter | {"name": "n" * 200})


@pytest.mark.parametrize(("meter", "field"), [
    ({"aggregation": "sum", "property": "p" * 129}, "property"),
    ({"aggregation": "count", "unit": "u" * 51}, "unit"),
    ({"aggregation": "count", "group_by": ["g" * 129]}, "group_by[0]"),
    ({"aggregation": "count", "filter": {"k" * 129: ["a"]}}, "filter"),
    ({"aggregation": "count", "filter": {"tier": ["v" * 1025]}}, "filter.tier[0]"),
    ({"aggregation": "count", "filter": {"tier": [str(i) for i in range(101)]}}, "filter.tier"),
])
def test_meter_texts_are_bounded(api: Api, meter: dict[str, Any], field: str) -> None:
    assert error(api.put("/v1/meters/m", {"event_type": "api.call", **meter}), 400)["field"] == field


def test_customer_metadata_is_bounded(catalog: Api) -> None:
    huge = {f"k{i}": "v" * 1000 for i in range(500)}  # ~500 KB: over DynamoDB's item limit
    assert error(catalog.put("/v1/customers/acme", ACME | {"metadata": huge}), 413)["field"] == "body"
    large = {f"k{i}": "v" * 1000 for i in range(200)}  # ~200 KB: a body the HTTP layer takes
    assert error(catalog.put("/v1/customers/acme", ACME | {"metadata": large}), 400)["field"] == "metadata"
    too_many = {f"k{i}": "v" for i in range(51)}
    assert error(catalog.put("/v1/customers/acme", ACME | {"metadata": too_many}), 400)["field"] == "metadata"
    assert error(catalog.put("/v1/customers/acme", ACME | {"metadata": {"k" * 41: "v"}}), 400)["field"] == "metadata"
    assert error(catalog.put("/v1/customers/acme", ACME | {"metadata": {"k": "v" * 501}}), 400)["field"] \
        == "metadata.k"
    catalog.ok("PUT", "/v1/customers/acme", ACME | {"metadata": {f"k{i:02d}" + "k" * 37: "v" * 500 for i in range(50)}})


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "n" * 201}, "name"),
    ({"address": {"line1": "l" * 201}}, "address.line1"),
    ({"address": {"city": "\ud800"}}, "address.city"),  # DynamoDB stores UTF-8: no lone surrogates
])
def test_customer_texts_are_bounded(catalog: Api, change: dict[str, Any], field: str) -> None:
    body = json.dumps(ACME | change)  # ASCII escapes: a lone surrogate is valid JSON text
    resp = catalog.request("PUT", "/v1/customers/acme", content=body, headers={"content-type": "application/json"})
    assert error(resp, 400)["field"] == field


@pytest.mark.parametrize(("path", "value", "field"), [
    ("name", "n" * 201, "name"),
    ("charges[0].display_name", "d" * 201, "charges[0].display_name"),
    ("charges[0].unit", "u" * 51, "charges[0].unit"),
    ("charges[0].tiers", [{"up_to": str(i + 1), "unit_amount": "1"} for i in range(100)]
     + [{"up_to": None, "unit_amount": "1"}], "charges[0].tiers"),
])
def test_plan_texts_and_lists_are_bounded(catalog: Api, path: str, value: Any, field: str) -> None:
    assert error(catalog.put("/v1/plans/p", plan_with(path, value)), 400)["field"] == field


def test_a_plan_document_cannot_approach_the_item_limit(api: Api) -> None:
    meters = [f"m{i}" for i in range(100)]
    for m in meters:
        api.ok("PUT", f"/v1/meters/{m}", {"event_type": "e", "aggregation": "count"})
    tiers = [{"up_to": f"{j + 1}.{'1' * 10}", "unit_amount": "0.00000000001", "flat_amount": "1.00"}
             for j in range(29)] + [{"up_to": None, "unit_amount": "0.00000000001"}]
    plan = {"currency": "USD", "charges": [{"meter": m, "model": "graduated", "tiers": tiers} for m in meters]}
    assert 100_000 < len(json.dumps(plan)) < 262_144      # over the plan limit, under the HTTP body limit
    assert error(api.put("/v1/plans/p", plan), 400)["field"] == "charges"


def test_other_texts_are_bounded(catalog: Api) -> None:
    assert error(catalog.put("/v1/customers/acme/discounts/d", {"type": "fixed", "amount": "1", "name": "n" * 201}),
                 400)["field"] == "name"
    assert error(catalog.put("/v1/tax-rates/t", {"name": "n" * 201, "percentage": "1", "country": "US"}),
                 400)["field"] == "name"
