"""Data privacy through the HTTP API (in-process, moto): GET /v1/customers/{id}/export returns what
meterbill holds about a customer, POST /v1/customers/{id}/erase removes or pseudonymises what no
law requires to be kept (invoices keep what tax law requires), both audited; the raw-event sweep."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from tests.conftest import ev
from tests.integration.test_api import SECRETS, Api, error

OCT, NOV, DEC = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"
ADDRESS = {"line1": "1 Hauptstr.", "city": "Berlin", "postal_code": "10115", "country": "DE"}
PERSONAL = ("jane@acme.example", "alice@users.example", "bob-4711", "Jane Doe", "+49 30 1234567", "t4-shared")
PLAN = {"currency": "EUR", "interval": "month", "base_fee": "10.00", "charges": [
    {"meter": "gpu_seconds", "model": "matrix", "dimensions": ["gpu"], "default_unit_amount": "0.01",
     "prices": [{"match": {"gpu": "h100"}, "unit_amount": "0.05"}]},
    {"meter": "active_users", "model": "per_unit", "unit_amount": "2.00"},
    {"meter": "calls_by_user", "model": "per_unit", "unit_amount": "0.10"}]}


@pytest.fixture
def api(container: Any) -> Api:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container), container)


def scan(ddb: Any, table: str) -> str:
    """Everything stored in a table, as text (to look for personal values anywhere in it)."""
    items, start = [], None
    while True:
        page = ddb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return json.dumps(items)


def events(month: str, first: int) -> list[dict[str, Any]]:
    day = f"2026-{month}-0"
    return [
        ev(f"e{first}", ts=f"{day}5T10:00:00Z", type_="gpu.run", gpu="h100", seconds=100, user="alice@users.example"),
        ev(f"e{first + 1}", ts=f"{day}5T11:00:00Z", type_="gpu.run", gpu="t4-shared", seconds=50, user="bob-4711"),
        ev(f"e{first + 2}", ts=f"{day}6T09:00:00Z", type_="app.login", user="alice@users.example",
           note="call Jane Doe on +49 30 1234567"),
        ev(f"e{first + 3}", ts=f"{day}7T09:00:00Z", type_="app.login", user="bob-4711"),
        ev(f"e{first + 4}", ts=f"{day}7T09:30:00Z", type_="app.login", user="bob-4711")]


@pytest.fixture
def billed(api: Api, container: Any, drain: Any, clock: Any) -> dict[str, Any]:
    """acme, billed for October (final invoice, a credit note), with a discount and a credit grant."""
    api.ok("PUT", "/v1/meters/gpu_seconds", {"event_type": "gpu.run", "aggregation": "sum", "property": "seconds",
                                             "group_by": ["gpu"]})
    api.ok("PUT", "/v1/meters/active_users", {"event_type": "app.login", "aggregation": "unique_count",
                                              "property": "user"})
    api.ok("PUT", "/v1/meters/calls_by_user", {"event_type": "app.login", "aggregation": "count",
                                               "group_by": ["user"]})
    api.ok("PUT", "/v1/plans/team", PLAN)
    api.ok("PUT", "/v1/customers/acme", {
        "name": "Acme GmbH", "email": "jane@acme.example", "plan": "team", "started_at": OCT,
        "billing_anchor": OCT, "address": ADDRESS, "tax_id": "DE123456789",
        "metadata": {"contact": "Jane Doe", "phone": "+49 30 1234567"}})
    api.ok("PUT", "/v1/customers/acme/discounts/welcome", {"type": "percentage", "percentage": "10",
                                                           "duration": "forever"})
    api.ok("PUT", "/v1/customers/acme/credit-grants/g1", {"amount": "5.00", "reason": "goodwill"})
    sent = api.ok("POST", "/v1/events", {"events": events("10", 1)})
    assert sent["accepted"] == 5
    drain()
    clock.now = clock.now.replace(year=2026, month=11, day=1, hour=1)
    run = api.billing_run({"as_of": NOV})
    (invoice_id,) = run["invoices_created"]
    invoice = api.ok("GET", f"/v1/invoices/{invoice_id}")
    # gpu: 100 s x 0.05 + 50 s x 0.01 = 5.50; 2 active users x 2.00 = 4.00; 3 logins x 0.10 = 0.30; + 10.00
    assert invoice["subtotal"] == "19.80" and invoice["customer"]["email"] == "jane@acme.example"
    resp = api.post("/v1/credit-notes", {"invoice": invoice_id, "amount": "1.00", "memo": "outage"})
    assert resp.status_code == 201, resp.text
    return invoice


def test_export_returns_everything_held_and_is_audited(api: Api, billed: dict[str, Any], clock: Any) -> None:
    doc = api.ok("GET", "/v1/customers/acme/export")
    assert doc["customer_id"] == "acme" and doc["exported_at"]
    profile = doc["profile"]
    assert (profile["email"], profile["metadata"]["contact"], profile["tax_id"]) == \
        ("jane@acme.example", "Jane Doe", "DE123456789")
    assert [h["plan"] for h in profile["plan_history"]] == ["team"]
    assert "pk" not in profile and "gsi2sk" not in profile
    assert [d["id"] for d in doc["discounts"]] == ["welcome"]
    assert [(g["id"], g["reason"]) for g in doc["credit_grants"]] == [("g1", "goodwill")]
    assert [i["id"] for i in doc["invoices"]] == [billed["id"]]
    assert [(n["invoice_id"], n["memo"]) for n in doc["credit_notes"]] == [(billed["id"], "outage")]
    assert doc["late_usage_markers"] == [] and doc["pending_usage"] is None and doc["dead_letters"] == []
    usage = {m["meter"]: m for m in doc["usage"]["meters"]}
    assert usage["active_users"]["months"] == [{"month": "2026-10", "buckets": 3, "events": 3, "value": "2"}]
    (gpu,) = usage["gpu_seconds"]["months"]
    assert gpu["value"] == "150" and {g["group"]["gpu"]: g["value"] for g in gpu["groups"]} == \
        {"h100": "100", "t4-shared": "50"}
    (calls,) = usage["calls_by_user"]["months"]
    assert {g["group"]["user"]: g["value"] for g in calls["groups"]} == {"alice@users.example": "1", "bob-4711": "2"}
    assert doc["raw_events"]["included"] is False and "privacy sweep" in doc["raw_events"]["how"]
    (audit,) = doc["audit"]
    assert audit["action"] == "export" and audit["at"] == doc["exported_at"]
    assert audit["by"]["key_name"] == "test admin" and audit["by"]["key_id"].startswith("key_")
    assert SECRETS["admin"] not in json.dumps(doc)
    # a second export lists the first one too
    clock.advance(seconds=1)
    assert [a["action"] for a in api.ok("GET", "/v1/customers/acme/export")["audit"]] == ["export", "export"]


def test_export_and_erase_need_an_admin_key_and_an_existing_customer(api: Api, billed: dict[str, Any]) -> None:
    assert error(api.get("/v1/customers/acme/export", key="read"), 403)["code"] == "forbidden"
    assert error(api.post("/v1/customers/acme/erase", {}, key="read"), 403)["code"] == "forbidden"
    assert error(api.get("/v1/customers/acme/export", key=None), 401)["code"] == "unauthorized"
    assert error(api.get("/v1/customers/nobody/export"), 404)["field"] == "id"
    assert error(api.post("/v1/customers/nobody/erase", {}), 404)["field"] == "id"
    assert error(api.post("/v1/customers/acme/erase", {"reason": "x" * 501}), 400)["field"] == "reason"


def test_erase_keeps_what_tax_law_requires_and_pseudonymises_the_rest(
        api: Api, billed: dict[str, Any], container: Any, ddb: Any, drain: Any, clock: Any) -> None:
    sim_before = api.ok("POST", "/v1/simulations", {"plan": PLAN, "customers": ["acme"], "periods": 1})
    result = api.ok("POST", "/v1/customers/acme/erase", {"reason": "GDPR request #17"})
    assert result["profile_fields_removed"] == ["email", "metadata"]
    assert (result["invoices"], result["credit_notes"]) == (1, 1)
    # gpu: the t4 bucket (h100 is a price-list value); active_users: 3 buckets; calls_by_user: 3 buckets
    assert result["usage_buckets_pseudonymised"] == 7
    assert result["raw_events"].startswith("pending")

    customer = api.ok("GET", "/v1/customers/acme")
    assert "email" not in customer or customer["email"] is None
    assert not customer.get("metadata") and customer["personal_data_erased_at"] == result["erased_at"]
    assert (customer["name"], customer["address"], customer["tax_id"]) == ("Acme GmbH", ADDRESS, "DE123456789")
    invoice = api.ok("GET", f"/v1/invoices/{billed['id']}")
    assert "email" not in invoice["customer"]
    assert (invoice["customer"]["name"], invoice["customer"]["address"], invoice["customer"]["tax_id"]) == \
        ("Acme GmbH", ADDRESS, "DE123456789")
    assert {k: invoice[k] for k in ("number", "subtotal", "total", "lines")} == \
        {k: billed[k] for k in ("number", "subtotal", "total", "lines")}
    (note,) = api.ok("GET", f"/v1/credit-notes?invoice={billed['id']}")["data"]
    assert "email" not in note["customer"] and note["customer"]["name"] == "Acme GmbH"
    assert api.get(f"/v1/invoices/{billed['id']}.pdf").status_code == 200

    # nowhere else: issued invoices and credit notes are kept as issued (their lines name what was
    # supplied, a matrix line the dimension values it priced), only without the e-mail address
    stored = [i for i in json.loads(scan(ddb, "t-billing")) if not i["pk"]["S"].startswith(("INV#", "CN#"))]
    billing = json.dumps(stored)
    for value in PERSONAL:
        assert value not in billing, (value, [i for i in stored if value in json.dumps(i)])
    assert "h100" in billing and "erased:" in billing
    assert "gpu=t4-shared" in json.dumps(invoice["lines"])
    # the pseudonymised usage still rates the same: re-rating October gives the invoiced subtotal
    sim_after = api.ok("POST", "/v1/simulations", {"plan": PLAN, "customers": ["acme"], "periods": 1})
    assert sim_after == sim_before
    assert sim_after["customers"][0]["periods"][0]["new_subtotal"] == "19.80"

    # raw events keep their personal values until the sweep, then not; amounts and catalog values stay
    assert "alice@users.example" in scan(ddb, "t-events")
    clock.advance(hours=1)
    exported: list[tuple[str, dict[str, Any]]] = []
    swept = container.privacy.sweep({"via": "test"}, ["acme"], lambda c, e: exported.append((c, e)), segments=2)
    assert swept["erasures"] == ["acme"] and swept["events_pseudonymised"] == 5
    assert len(exported) == 5 and {e["properties"].get("user") for _, e in exported} >= {"bob-4711"}
    raw = scan(ddb, "t-events")
    for value in PERSONAL:
        assert value not in raw, value
    gpu_run = api.ok("GET", "/v1/events/e1")
    assert gpu_run["properties"]["gpu"] == "h100" and gpu_run["properties"]["seconds"] == 100
    assert gpu_run["properties"]["user"].startswith("erased:")
    drain()  # the sweep's MODIFY records count nothing
    assert api.ok("POST", "/v1/simulations", {"plan": PLAN, "customers": ["acme"], "periods": 1}) == sim_before
    # the original event sent again is still its own duplicate (the digest is kept)
    again = api.ok("POST", "/v1/events", {"events": events("10", 1)[:1]})
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert container.privacy.sweep({"via": "test"})["erasures"] == []  # the key is forgotten

    clock.advance(hours=1)
    audit = api.ok("GET", "/v1/customers/acme/export")["audit"]
    actions = [a["action"] for a in audit]
    assert actions[0] == "erase" and actions[-1] == "export"
    assert sorted(actions[1:3]) == ["erase_raw_events", "export_raw_events"]  # one sweep, one time
    erase, by_action = audit[0], {a["action"]: a for a in audit}
    assert erase["by"]["key_name"] == "test admin" and erase["reason"] == "GDPR request #17"
    assert erase["at"] == result["erased_at"]
    assert by_action["erase_raw_events"]["events_pseudonymised"] == 5
    assert by_action["export_raw_events"]["events"] == 5 and by_action["export_raw_events"]["by"] == {"via": "test"}


def test_later_invoices_still_work_after_an_erasure(api: Api, billed: dict[str, Any], drain: Any, clock: Any) -> None:
    api.ok("POST", "/v1/customers/acme/erase", {})
    clock.now = clock.now.replace(day=20)  # November: the same users come back
    assert api.ok("POST", "/v1/events", {"events": events("11", 10)})["accepted"] == 5
    drain()
    clock.now = clock.now.replace(month=12, day=1, hour=1)
    run = api.billing_run({"as_of": DEC})
    assert run["errors"] == [] and len(run["invoices_created"]) == 1
    november = api.ok("GET", f"/v1/invoices/{run['invoices_created'][0]}")
    assert november["customer"]["name"] == "Acme GmbH" and not november["customer"].get("email")
    assert november["subtotal"] == "19.80" and november["number"] == "T-000002"
    assert api.get(f"/v1/invoices/{november['id']}.html").status_code == 200
    again = api.ok("POST", "/v1/customers/acme/erase", {})  # harmless to repeat; November's values now
    assert again["profile_fields_removed"] == [] and again["usage_buckets_pseudonymised"] == 7


def test_erase_waits_for_aggregation(api: Api, billed: dict[str, Any], drain: Any) -> None:
    api.ok("POST", "/v1/events", {"events": events("10", 20)})  # not aggregated yet
    resp = api.post("/v1/customers/acme/erase", {})
    assert error(resp, 409)["code"] == "conflict" and "aggregation" in resp.json()["error"]["message"]
    drain()
    assert api.ok("POST", "/v1/customers/acme/erase", {})["profile_fields_removed"] == ["email", "metadata"]


def test_unique_values_paged_out_of_a_bucket_are_pseudonymised_and_the_old_pages_removed(
        api: Api, container: Any, ddb: Any, drain: Any) -> None:
    api.ok("PUT", "/v1/meters/seats", {"event_type": "seat.used", "aggregation": "unique_count", "property": "user"})
    api.ok("PUT", "/v1/plans/seats", {"currency": "EUR", "interval": "month",
                                      "charges": [{"meter": "seats", "model": "per_unit", "unit_amount": "1.00"}]})
    api.ok("PUT", "/v1/customers/big", {"name": "Big AG", "plan": "seats", "started_at": OCT, "billing_anchor": OCT})
    users = [f"user-{i:04d}-{'x' * 30}@big.example" for i in range(600)]  # ~26 KB: beyond a bucket's 16 KB inline
    sent = api.ok("POST", "/v1/events", {"events": [
        ev(f"s{i}", customer="big", ts="2026-10-10T10:00:00Z", type_="seat.used", user=u) for i, u in enumerate(users)]})
    assert sent["accepted"] == 600
    drain()
    pages_before = ddb.query(TableName="t-billing", KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": "UV#big"}})["Items"]
    assert pages_before, "the distinct values should have been paged out"
    result = api.ok("POST", "/v1/customers/big/erase", {})
    assert result["usage_buckets_pseudonymised"] == 1
    billing = scan(ddb, "t-billing")
    assert "@big.example" not in billing
    pages_after = ddb.query(TableName="t-billing", KeyConditionExpression="pk = :p",
                            ExpressionAttributeValues={":p": {"S": "UV#big"}})["Items"]
    assert pages_after and not {p["sk"]["S"] for p in pages_before} & {p["sk"]["S"] for p in pages_after}
    usage = api.ok("GET", "/v1/customers/big/export")["usage"]["meters"]
    assert usage == [{"meter": "seats", "aggregation": "unique_count",
                      "months": [{"month": "2026-10", "buckets": 1, "events": 600, "value": "600"}]}]


def test_usage_after_an_erasure_joins_its_pseudonymised_group(api: Api, billed: dict[str, Any], drain: Any,
                                                              clock: Any) -> None:
    api.ok("POST", "/v1/customers/acme/erase", {})
    # late usage for October, in the same 15 minutes as an erased event of the same user
    late = ev("late-1", ts="2026-10-07T09:05:00Z", type_="app.login", user="bob-4711")
    assert api.ok("POST", "/v1/events", {"events": [late]})["late"] == ["late-1"]
    drain()
    api.ok("POST", "/v1/customers/acme/erase", {})  # the same pending erasure: the same pseudonyms
    (calls,) = [m for m in api.ok("GET", "/v1/customers/acme/export")["usage"]["meters"]
                if m["meter"] == "calls_by_user"]
    groups = sorted(g["value"] for g in calls["months"][0]["groups"])
    assert groups == ["1", "3"], calls  # bob's 2 logins and the late one: one group, still one user
    assert all(g["group"]["user"].startswith("erased:") for g in calls["months"][0]["groups"])
