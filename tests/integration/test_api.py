"""The HTTP API in-process: the real app (build_app + HttpResolverLocal) over ASGI, on the real
services and adapters (moto in-process, tables from template.yaml)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from tests.conftest import ev, finished_run

OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
SECRETS = {"admin": "mbtest_admin_0123456789abcdef", "read": "mbtest_read_0123456789abcdef",
           "ingest": "mbtest_ingest_0123456789abcdef"}
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


class Api:
    """Synchronous driver of the ASGI app (pytest-asyncio is not used): one request per loop."""

    def __init__(self, app: Any, container: Any = None) -> None:
        self.app = app
        self.container = container
        self.responses: list[httpx.Response] = []

    def request(self, method: str, path: str, *, key: str | None = "admin", json_body: Any = None,
                content: str | bytes | None = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None) -> httpx.Response:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs.setdefault("Authorization", f"Bearer {SECRETS.get(key, key)}")

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://test") as client:
                return await client.request(method, path, json=json_body, content=content,
                                            headers=hdrs, params=params)

        resp = asyncio.run(go())
        self.responses.append(resp)
        return resp

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, json_body=body, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json_body=body, **kw)

    def billing_run(self, body: Any = None, **kw: Any) -> dict[str, Any]:
        """POST /v1/billing-runs (202), then the close queue driven by the close worker until the
        run is done: the finished run, with the invoices and drafts it made (tests.conftest.finished_run)."""
        import boto3

        from functions.close_worker import process
        from meterbill.local.stack import QueueWorker

        resp = self.request("POST", "/v1/billing-runs", json_body={} if body is None else body, **kw)
        assert resp.status_code == 202, (resp.status_code, resp.text)
        worker = QueueWorker(boto3.client("sqs", region_name="us-east-1"), self.container.settings.close_queue_url,
                             lambda event, ctx: process(event, ctx, self.container.billing_runs))
        return finished_run(self.container, worker, resp.json())

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        resp = self.request(method, path, json_body=body, **kw)
        assert resp.status_code == 200, (method, path, resp.status_code, resp.text)
        return resp.json()


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) >= {"code", "message", "field"} and err["message"]
    return err


@pytest.fixture
def api(container: Any) -> Api:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container), container)


METER_TOKENS = {"event_type": "api.call", "aggregation": "sum", "property": "tokens", "name": "Tokens"}
METER_CALLS = {"event_type": "api.call", "aggregation": "count"}
PLAN_PRO = {"currency": "USD", "interval": "month", "base_fee": "49.00", "name": "Pro", "charges": [
    {"meter": "tokens", "model": "graduated",
     "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}]},
    {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}]}
ACME = {"name": "Acme Inc", "email": "billing@acme.example", "plan": "pro", "started_at": OCT,
        "billing_anchor": OCT, "payment_terms_days": 15, "address": ADDRESS}


@pytest.fixture
def catalog(api: Api) -> Api:
    api.ok("PUT", "/v1/meters/tokens", METER_TOKENS)
    api.ok("PUT", "/v1/meters/calls", METER_CALLS)
    api.ok("PUT", "/v1/plans/pro", PLAN_PRO)
    api.ok("PUT", "/v1/customers/acme", ACME)
    return api


def events_body(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


# -- auth ----------------------------------------------------------------------------------
def test_no_authorization_header_is_401_with_challenge(api: Api) -> None:
    resp = api.get("/v1/meters", key=None)
    err = error(resp, 401)
    assert err["code"] == "unauthorized"
    assert resp.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer mb_not_a_real_key_0123456789", "Basic dXNlcjpwYXNz",
                                    f"Token {SECRETS['admin']}", "Bearer "])
def test_bad_key_is_401(api: Api, header: str) -> None:
    resp = api.get("/v1/meters", key=None, headers={"Authorization": header})
    assert error(resp, 401)["code"] == "unauthorized"
    assert "www-authenticate" in resp.headers


def test_read_key_cannot_write_meters(api: Api) -> None:
    err = error(api.put("/v1/meters/tokens", METER_TOKENS, key="read"), 403)
    assert err["code"] == "forbidden"
    assert api.get("/v1/meters/tokens").status_code == 404  # nothing was written


def test_ingest_key_cannot_read_invoices(api: Api) -> None:
    assert error(api.get("/v1/invoices", key="ingest"), 403)["code"] == "forbidden"
    assert error(api.get("/v1/meters", key="ingest"), 403)["code"] == "forbidden"


def test_read_key_cannot_ingest_or_run_billing(api: Api) -> None:
    assert api.post("/v1/events", events_body(ev(1, tokens=1)), key="read").status_code == 403
    assert api.post("/v1/billing-runs", {"as_of": NOV}, key="read").status_code == 403
    assert api.post("/v1/billing-runs", {"as_of": NOV}, key="ingest").status_code == 403


def test_scoped_keys_can_do_their_own_job(catalog: Api) -> None:
    assert catalog.post("/v1/events", events_body(ev(1, tokens=1)), key="ingest").status_code == 200
    assert catalog.get("/v1/invoices", key="read").status_code == 200
    assert catalog.get("/v1/customers/acme", key="read").status_code == 200


def test_admin_key_can_do_everything(catalog: Api) -> None:
    for method, path, body in [("GET", "/v1/meters", None), ("GET", "/v1/plans/pro", None),
                               ("GET", "/v1/customers", None), ("GET", "/v1/invoices", None),
                               ("POST", "/v1/events", events_body(ev(1, tokens=3))),
                               ("GET", "/v1/events/1", None),
                               ("PUT", "/v1/meters/extra", {"event_type": "x", "aggregation": "count"}),
                               ("POST", "/v1/billing-runs", {"as_of": OCT})]:
        resp = catalog.request(method, path, json_body=body, key="admin")
        assert resp.status_code == (202 if path == "/v1/billing-runs" else 200), (method, path, resp.text)


def test_health_needs_no_key(api: Api) -> None:
    assert api.ok("GET", "/v1/health", key=None) == {"status": "ok",
                                                     "aggregation": {"status": "caught_up", "lag_s": 0}}


def test_key_material_never_in_responses_and_stored_only_as_digest(catalog: Api, ddb: Any) -> None:
    from meterbill.services.keys import digest

    catalog.post("/v1/events", events_body(ev(1, tokens=1)), key="ingest")
    catalog.get("/v1/invoices", key="ingest")          # 403
    catalog.put("/v1/meters/m", METER_CALLS, key="read")  # 403
    catalog.get("/v1/meters", key="mbtest_wrong_0123456789abcdef")
    for resp in catalog.responses:
        for secret in [*SECRETS.values(), "mbtest_wrong_0123456789abcdef"]:
            assert secret not in resp.text
            assert secret not in str(resp.headers)
    items = ddb.scan(TableName="t-billing")["Items"]
    key_items = [i for i in items if i["pk"]["S"].startswith("KEY#")]
    assert len(key_items) == 3
    assert {i["pk"]["S"] for i in key_items} == {f"KEY#{digest(s)}" for s in SECRETS.values()}
    dumped = json.dumps(items)
    for secret in SECRETS.values():
        assert secret not in dumped
    # nothing of the secret is stored but its digest (no prefix); the public id is random
    for item in key_items:
        assert "prefix" not in item and item["id"]["S"] == item["gsi1sk"]["S"]
        assert all(len(v.get("S", "")) < 16 or v["S"].startswith("KEY#")
                   for k, v in item.items() if k not in ("created_at", "name", "id", "gsi1sk", "last_used_at"))


def test_unauthenticated_invalid_body_is_still_401(api: Api) -> None:
    resp = api.put("/v1/plans/pro", {"currency": "USD", "bogus": 1}, key=None)
    assert resp.status_code == 401, resp.text


# -- validation ----------------------------------------------------------------------------
def test_float_amount_is_rejected_naming_the_field(catalog: Api) -> None:
    plan = {"currency": "USD", "charges": [{"meter": "calls", "model": "per_unit", "unit_amount": 0.01}]}
    err = error(catalog.put("/v1/plans/flt", plan), 400)
    assert "charges" in err["field"] and "unit_amount" in err["field"] and "0" in err["field"]
    assert catalog.get("/v1/plans/flt").status_code == 404


def test_float_base_fee_and_tier_amount_are_rejected(catalog: Api) -> None:
    err = error(catalog.put("/v1/plans/flt", {"currency": "USD", "base_fee": 49.0}), 400)
    assert err["field"] == "base_fee"
    plan = {"currency": "USD", "charges": [{"meter": "tokens", "model": "graduated", "tiers": [
        {"up_to": "10", "unit_amount": "0.1"}, {"up_to": None, "unit_amount": 0.05}]}]}
    err = error(catalog.put("/v1/plans/flt", plan), 400)
    assert "tiers" in err["field"] and err["field"].endswith("unit_amount")


def test_unknown_currency_names_currency(catalog: Api) -> None:
    err = error(catalog.put("/v1/plans/x", {"currency": "XYZ"}), 400)
    assert err["field"] == "currency"
    assert "XYZ" in err["message"]


def test_graduated_tiers_out_of_order_name_the_tier(catalog: Api) -> None:
    plan = {"currency": "USD", "charges": [{"meter": "tokens", "model": "graduated", "tiers": [
        {"up_to": "1000", "unit_amount": "0.01"}, {"up_to": "500", "unit_amount": "0.008"},
        {"up_to": None, "unit_amount": "0.005"}]}]}
    err = error(catalog.put("/v1/plans/bad", plan), 400)
    assert "tiers" in err["field"] and "1" in err["field"] and err["field"].endswith("up_to")
    assert "1000" in err["message"]


def test_plan_charging_unknown_meter_names_it(catalog: Api) -> None:
    plan = {"currency": "USD", "charges": [{"meter": "nope", "model": "per_unit", "unit_amount": "1"}]}
    err = error(catalog.put("/v1/plans/bad", plan), 400)
    assert "meter" in err["field"] and "nope" in err["message"]


def test_customer_with_unknown_plan_names_plan(catalog: Api) -> None:
    resp = catalog.put("/v1/customers/c1", {**ACME, "plan": "missing"})
    assert resp.status_code in (400, 404), resp.text
    assert error(resp, resp.status_code)["field"] == "plan"
    assert catalog.get("/v1/customers/c1").status_code == 404


@pytest.mark.parametrize("path,body,field", [
    ("/v1/meters/m", {**METER_CALLS, "colour": "red"}, "colour"),
    ("/v1/plans/p", {"currency": "USD", "discount": "5"}, "discount"),
    ("/v1/customers/c", {**ACME, "vat_id": "X"}, "vat_id"),
    ("/v1/customers/c", {**ACME, "address": {**ADDRESS, "planet": "Earth"}}, "address.planet"),
])
def test_unknown_body_field_is_named(catalog: Api, path: str, body: dict[str, Any], field: str) -> None:
    err = error(catalog.put(path, body), 400)
    assert err["field"] == field


def test_wrong_types_and_values_are_named(catalog: Api) -> None:
    assert error(catalog.put("/v1/meters/m", {"event_type": "x", "aggregation": "median"}), 400)["field"] \
        == "aggregation"
    assert error(catalog.put("/v1/customers/c", {**ACME, "payment_terms_days": 400}), 400)["field"] \
        == "payment_terms_days"
    assert error(catalog.put("/v1/customers/c", {**ACME, "started_at": "last tuesday"}), 400)["field"] \
        == "started_at"
    assert error(catalog.put("/v1/customers/c", {k: v for k, v in ACME.items() if k != "name"}), 400)["field"] \
        == "name"


def test_malformed_json_body_on_put_is_400(catalog: Api) -> None:
    resp = catalog.request("PUT", "/v1/meters/m", content=b'{"event_type": ',
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"]


def test_bad_limit_is_400(catalog: Api) -> None:
    assert error(catalog.get("/v1/meters", params={"limit": 0}), 400)["field"].endswith("limit")
    assert error(catalog.get("/v1/meters", params={"limit": 101}), 400)["field"].endswith("limit")


# -- events --------------------------------------------------------------------------------
def test_all_events_accepted_is_200(catalog: Api) -> None:
    body = catalog.ok("POST", "/v1/events", events_body(*[ev(i, tokens=10) for i in range(3)]),
                      key="ingest")
    assert {k: body[k] for k in ("received", "accepted", "duplicates", "rejected", "pending", "late",
                                 "errors")} == {"received": 3, "accepted": 3, "duplicates": 0, "rejected": 0,
                                                "pending": [], "late": [], "errors": []}
    again = catalog.ok("POST", "/v1/events", events_body(ev(0, tokens=10)), key="ingest")
    assert (again["accepted"], again["duplicates"]) == (0, 1)


def test_some_events_rejected_is_207_with_per_event_errors(catalog: Api) -> None:
    events = [ev("a", tokens=1), ev("b", tokens="lots"), ev("c", ts="2027-01-01T00:00:00Z", tokens=1),
              {"id": "d", "customer": "acme", "type": "api.call"}, ev("e", tokens=2)]
    resp = catalog.post("/v1/events", events_body(*events), key="ingest")
    assert resp.status_code == 207, resp.text
    body = resp.json()
    assert (body["received"], body["accepted"], body["rejected"]) == (5, 2, 3)
    assert [(e["index"], e["id"], e["field"], e["code"]) for e in body["errors"]] == [
        (1, "b", "properties.tokens", "invalid_for_meter"),
        (2, "c", "timestamp", "future_timestamp"),
        (3, "d", "timestamp", "required")]
    for e in body["errors"]:
        assert set(e) == {"index", "id", "field", "code", "message"} and e["message"]
    assert catalog.get("/v1/events/a").status_code == 200
    assert catalog.get("/v1/events/b").status_code == 404  # rejected means not stored


def test_no_event_accepted_is_422(catalog: Api) -> None:
    resp = catalog.post("/v1/events", events_body(ev("x", ts="yesterday"), {"id": "y"}), key="ingest")
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (0, 2)
    assert [e["index"] for e in body["errors"]] == [0, 1]


def test_malformed_json_events_is_400(catalog: Api) -> None:
    resp = catalog.request("POST", "/v1/events", key="ingest", content=b'{"events": [{"id": 1,',
                           headers={"Content-Type": "application/json"})
    err = error(resp, 400)
    assert err["field"] == "body" and "JSON" in err["message"]


def test_too_many_events_is_400_naming_events(catalog: Api) -> None:
    events = [ev(i, tokens=1) for i in range(1001)]
    err = error(catalog.post("/v1/events", events_body(*events), key="ingest"), 400)
    assert err["field"] == "events" and "1001" in err["message"]
    assert catalog.get("/v1/events/0").status_code == 404  # nothing of the batch was stored


def test_exactly_1000_events_is_accepted(catalog: Api) -> None:
    body = catalog.ok("POST", "/v1/events", events_body(*[ev(i, tokens=1) for i in range(1000)]),
                      key="ingest")
    assert body["accepted"] == 1000


@pytest.mark.parametrize("body", [{"events": []}, {}, {"events": {"id": 1}}, [ev(1)]])
def test_empty_or_misshapen_batch_is_400(catalog: Api, body: Any) -> None:
    err = error(catalog.post("/v1/events", body, key="ingest"), 400)
    assert err["field"] == "events"


def test_empty_body_is_400(catalog: Api) -> None:
    resp = catalog.request("POST", "/v1/events", key="ingest", content=b"",
                           headers={"Content-Type": "application/json"})
    assert error(resp, 400)["field"] == "body"


def test_unknown_top_level_field_is_named(catalog: Api) -> None:
    err = error(catalog.post("/v1/events", {"events": [ev(1)], "dry_run": True}, key="ingest"), 400)
    assert err["field"] == "dry_run"


@pytest.mark.parametrize("ctype", ["application/xml", "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415(catalog: Api, ctype: str) -> None:
    resp = catalog.request("POST", "/v1/events", key="ingest", content=json.dumps(events_body(ev(1))),
                           headers={"Content-Type": ctype})
    err = error(resp, 415)
    assert err["field"] == "content-type" and ctype in err["message"]
    assert catalog.get("/v1/events/1").status_code == 404


def test_non_json_body_with_unsupported_content_type_is_415_naming_content_type(catalog: Api) -> None:
    resp = catalog.request("POST", "/v1/events", key="ingest", content=b"id,customer\n1,acme\n",
                           headers={"Content-Type": "text/csv"})
    assert error(resp, 415)["field"] == "content-type"


def test_cloudevent_single_is_stored_with_subject_as_customer(catalog: Api) -> None:
    ce = {"specversion": "1.0", "id": "ce-1", "source": "/gateway", "type": "api.call", "subject": "acme",
          "time": "2026-10-10T10:00:00Z", "datacontenttype": "application/json", "data": {"tokens": 42}}
    resp = catalog.request("POST", "/v1/events", key="ingest", content=json.dumps(ce),
                           headers={"Content-Type": "application/cloudevents+json; charset=utf-8"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1
    stored = catalog.ok("GET", "/v1/events/ce-1")
    assert stored["customer"] == "acme"
    assert stored["type"] == "api.call"
    assert stored["timestamp"] == "2026-10-10T10:00:00Z"
    assert stored["properties"] == {"tokens": 42}


def test_cloudevents_batch_is_stored_event_by_event(catalog: Api) -> None:
    batch = [{"specversion": "1.0", "id": f"ceb-{i}", "source": "/gw", "type": "api.call", "subject": "acme",
              "time": f"2026-10-1{i}T00:00:00Z", "data": {"tokens": i}} for i in range(3)]
    batch.append({"specversion": "1.0", "id": "ceb-bad", "source": "/gw", "type": "api.call",
                  "time": OCT, "data": {}})  # no subject
    resp = catalog.request("POST", "/v1/events", key="ingest", content=json.dumps(batch),
                           headers={"Content-Type": "application/cloudevents-batch+json"})
    assert resp.status_code == 207, resp.text
    body = resp.json()
    assert body["accepted"] == 3
    assert [(e["index"], e["id"], e["field"]) for e in body["errors"]] == [(3, "ceb-bad", "subject")]
    for i in range(3):
        stored = catalog.ok("GET", f"/v1/events/ceb-{i}")
        assert (stored["customer"], stored["properties"]) == ("acme", {"tokens": i})


def test_cloudevents_batch_must_be_an_array(catalog: Api) -> None:
    resp = catalog.request("POST", "/v1/events", key="ingest", content=json.dumps({"id": "x"}),
                           headers={"Content-Type": "application/cloudevents-batch+json"})
    assert error(resp, 400)["field"] == "body"


def test_decimal_property_keeps_every_digit(catalog: Api) -> None:
    raw = ('{"events": [{"id": "dec-1", "customer": "acme", "type": "storage", '
           '"timestamp": "2026-10-10T10:00:00Z", "properties": {"bytes": 9999999999999999.9999999999, '
           '"big": 9007199254740993, "exp": 1.5e3}}]}')  # the largest number accepted; 2^53 + 1
    resp = catalog.request("POST", "/v1/events", key="ingest", content=raw,
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    got = catalog.get("/v1/events/dec-1")
    assert got.status_code == 200
    props = json.loads(got.text, parse_float=Decimal)["properties"]
    assert str(props["bytes"]) == "9999999999999999.9999999999"
    assert Decimal(str(props["big"])) == Decimal("9007199254740993")
    assert Decimal(str(props["exp"])) == Decimal(1500)


def test_get_unknown_event_is_404(catalog: Api) -> None:
    err = error(catalog.get("/v1/events/never"), 404)
    assert err["code"] == "not_found"


def test_event_for_unknown_customer_is_pending_and_listed(catalog: Api) -> None:
    body = catalog.ok("POST", "/v1/events", events_body(ev("p1", customer="newco", tokens=1),
                                                        ev("p2", customer="newco", ts=OCT, tokens=2)),
                      key="ingest")
    assert body["pending"] == ["p1", "p2"] and body["accepted"] == 2
    assert catalog.ok("GET", "/v1/events/p1")["flag"] == "pending"
    listed = catalog.ok("GET", "/v1/pending-customers", key="read")["data"]
    assert [(p["customer"], p["events"]) for p in listed] == [("newco", 2)]
    assert catalog.get("/v1/pending-customers", key="ingest").status_code == 403
    catalog.ok("PUT", "/v1/customers/newco", {"name": "New Co", "plan": "pro"})
    assert catalog.ok("GET", "/v1/pending-customers")["data"] == []


# -- resources -----------------------------------------------------------------------------
def test_meter_round_trip(api: Api) -> None:
    meter = {"event_type": "storage", "aggregation": "max", "property": "gb", "group_by": ["region"],
             "filter": {"tier": ["hot", "warm"]}, "name": "Storage", "unit": "GB"}
    put = api.ok("PUT", "/v1/meters/storage_gb", meter)
    got = api.ok("GET", "/v1/meters/storage_gb", key="read")
    assert got == put
    for k, v in meter.items():
        assert got[k] == v, k
    assert got["code"] == "storage_gb" and got["version"] == 1
    assert not {"pk", "sk", "gsi1pk", "gsi1sk"} & set(got)
    again = api.ok("PUT", "/v1/meters/storage_gb", {**meter, "name": "Storage (GB)"})
    assert again["version"] == 2


def test_meter_keep_values(api: Api) -> None:
    meter = {"event_type": "payment", "aggregation": "sum", "property": "amount", "keep_values": True}
    assert api.ok("PUT", "/v1/meters/payments", meter)["keep_values"] is True
    assert api.ok("GET", "/v1/meters/payments", key="read")["keep_values"] is True
    assert error(api.put("/v1/meters/payments", {**meter, "keep_values": False}), 409)["field"] == "code"
    err = error(api.put("/v1/meters/calls", {"event_type": "x", "aggregation": "count", "keep_values": True}), 400)
    assert (err["field"], err["message"]) == ("keep_values", "is only for aggregation 'sum' (this meter uses 'count')")


def test_meter_semantics_change_is_409(api: Api) -> None:
    api.ok("PUT", "/v1/meters/tokens", METER_TOKENS)
    err = error(api.put("/v1/meters/tokens", {**METER_TOKENS, "aggregation": "max"}), 409)
    assert err["code"] == "conflict"


def test_plan_round_trip(catalog: Api) -> None:
    got = catalog.ok("GET", "/v1/plans/pro", key="read")
    assert got["code"] == "pro" and got["currency"] == "USD" and got["interval"] == "month"
    assert got["base_fee"] == "49.00"
    assert got["charges"] == PLAN_PRO["charges"]
    assert not {"pk", "sk", "gsi1pk", "gsi1sk"} & set(got)


def test_plan_rounding_is_kept_and_validated(catalog: Api) -> None:
    assert catalog.ok("PUT", "/v1/plans/even", {**PLAN_PRO, "rounding": "half_even"})["rounding"] == "half_even"
    assert catalog.ok("GET", "/v1/plans/even", key="read")["rounding"] == "half_even"
    err = error(catalog.put("/v1/plans/even", {**PLAN_PRO, "rounding": "bankers"}), 400)
    assert err["field"] == "rounding" and "half_even" in err["message"]


def test_customer_round_trip(catalog: Api) -> None:
    got = catalog.ok("GET", "/v1/customers/acme", key="read")
    for k in ("name", "email", "plan", "started_at", "billing_anchor", "payment_terms_days", "address"):
        assert got[k] == ACME[k], k
    assert got["id"] == "acme" and got["currency"] == "USD" and got["timezone"] == "UTC"
    assert got["closed_through"] == ""
    assert not {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "next_close"} & set(got)


def test_get_unknown_resources_are_404(api: Api) -> None:
    for path, field in [("/v1/meters/nope", "code"), ("/v1/plans/nope", "plan"),
                        ("/v1/customers/nope", "id"), ("/v1/invoices/in_nope", "id")]:
        err = error(api.get(path), 404)
        assert (err["code"], err["field"]) == ("not_found", field), path


def test_unknown_route_is_404_json(api: Api) -> None:
    assert error(api.get("/v1/nothing-here"), 404)["code"] == "not_found"


def collect(api: Api, path: str, limit: int = 2) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    for _ in range(50):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = api.ok("GET", path, params=params, key="read")
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= limit
        pages.append(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("pagination did not terminate")


def test_lists_paginate_every_item_exactly_once(api: Api) -> None:
    meters = [f"m{i}" for i in range(5)]
    for code in meters:
        api.ok("PUT", f"/v1/meters/{code}", {"event_type": "x", "aggregation": "count"})
    for code in ("p1", "p2", "p3"):
        api.ok("PUT", f"/v1/plans/{code}", {"currency": "EUR"})
    customers = [f"c{i}" for i in range(5)]
    for cid in customers:
        api.ok("PUT", f"/v1/customers/{cid}", {"name": cid.upper(), "plan": "p1"})
    for path, key, want in [("/v1/meters", "code", meters), ("/v1/plans", "code", ["p1", "p2", "p3"]),
                            ("/v1/customers", "id", customers)]:
        pages = collect(api, path)
        seen = [item[key] for page in pages for item in page]
        assert sorted(seen) == sorted(want), path
        assert len(seen) == len(set(seen)), path
        assert len(pages) >= 3 if len(want) == 5 else len(pages) >= 2
        for page in pages:
            for item in page:
                assert not {"pk", "sk", "gsi1pk", "gsi1sk"} & set(item)


def test_bad_cursor_is_400_not_500(api: Api) -> None:
    resp = api.get("/v1/meters", params={"cursor": "not-a-cursor"})
    assert resp.status_code == 400, resp.text


# -- billing through HTTP ------------------------------------------------------------------
def test_events_to_invoice_over_http(catalog: Api, drain: Any) -> None:
    events = [ev(i, ts=f"2026-10-{10 + i:02d}T10:00:00Z", tokens=300) for i in range(5)]
    assert catalog.ok("POST", "/v1/events", events_body(*events), key="ingest")["accepted"] == 5
    drain()
    run = catalog.billing_run({"as_of": NOV})
    assert run["as_of"] == NOV and run["errors"] == []
    assert len(run["invoices_created"]) == 1

    listed = catalog.ok("GET", "/v1/invoices", params={"customer": "acme"}, key="read")
    assert listed["next_cursor"] is None and len(listed["data"]) == 1
    inv = listed["data"][0]
    assert inv["id"] == run["invoices_created"][0]
    assert inv["number"] == "T-000001"
    assert inv["status"] == "final"
    assert inv["customer"] == {"id": "acme", "name": "Acme Inc", "email": "billing@acme.example",
                               "address": ADDRESS, "tax_id": None}
    assert (inv["taxes"], inv["tax_total"], inv["tax_inclusive"]) == ([], "0.00", False)  # no rate for US
    assert inv["period"] == {"start": OCT, "end": NOV}
    assert inv["issued_at"] == NOV and inv["due_at"] == "2026-11-20T12:00:00Z"   # net 15 from the commit (clock)
    assert (inv["collection_method"], inv["amount_paid"], inv["balance_due"]) == ("send_invoice", "0.00", inv["amount_due"])
    assert inv["payment_terms_days"] == 15
    assert inv["currency"] == "USD"
    base, tokens, calls = inv["lines"]
    assert base["amount"] == "49.00" and "meter" not in base
    assert (tokens["meter"], tokens["quantity"], tokens["amount"]) == ("tokens", "1500", "12.50")
    assert [(t["tier"], t["from"], t["up_to"], t["units"], t["unit_amount"], t["amount"])
            for t in tokens["tiers"]] == [(1, "0", "1000", "1000", "0.01", "10.00"),
                                          (2, "1000", None, "500", "0.005", "2.500")]
    assert (calls["meter"], calls["quantity"], calls["unit_amount"], calls["amount"]) == \
        ("calls", "5", "0.001", "0.01")
    assert (inv["subtotal"], inv["total"]) == ("61.51", "61.51")
    for money in [inv["subtotal"], inv["total"], *(ln["amount"] for ln in inv["lines"])]:
        assert isinstance(money, str)
    for line in inv["lines"]:
        assert line["description"] and line["period"] == {"start": OCT, "end": NOV}
    assert not {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"} & set(inv)
    # amounts are strings on the wire, not JSON numbers
    raw = catalog.get("/v1/invoices", params={"customer": "acme"}).text
    assert '"total": "61.51"' in raw or '"total":"61.51"' in raw

    one = catalog.ok("GET", f"/v1/invoices/{inv['id']}", key="read")
    assert one.pop("integrations") == {}   # no integration enabled here: no sync state
    assert one == inv

    rerun = catalog.billing_run({"as_of": NOV})
    assert rerun["invoices_created"] == [] and rerun["errors"] == []
    assert len(catalog.ok("GET", "/v1/invoices", params={"customer": "acme"})["data"]) == 1


def test_billing_run_in_the_future_is_400(catalog: Api) -> None:
    err = error(catalog.post("/v1/billing-runs", {"as_of": "2027-01-01T00:00:00Z"}), 400)
    assert err["field"] == "as_of"
    assert catalog.ok("GET", "/v1/invoices")["data"] == []


@pytest.mark.parametrize("body,field", [({"as_of": "tomorrow-ish"}, "as_of"), ({"as_of": 5}, "as_of"),
                                        ({"when": NOV}, "when")])
def test_billing_run_bad_body_names_field(catalog: Api, body: dict[str, Any], field: str) -> None:
    assert error(catalog.post("/v1/billing-runs", body), 400)["field"] == field


def test_billing_run_without_as_of_closes_up_to_now(catalog: Api, drain: Any) -> None:
    catalog.ok("POST", "/v1/events", events_body(ev(1, tokens=2)), key="ingest")
    drain()
    run = catalog.billing_run({})
    assert run["as_of"] == "2026-11-05T12:00:00Z" and len(run["invoices_created"]) == 1


def test_invoices_filtered_by_customer(catalog: Api, drain: Any) -> None:
    catalog.ok("PUT", "/v1/customers/beta", {**ACME, "name": "Beta"})
    drain()
    catalog.billing_run({"as_of": NOV})
    all_ = catalog.ok("GET", "/v1/invoices")["data"]
    assert sorted(i["customer_id"] for i in all_) == ["acme", "beta"]
    only = catalog.ok("GET", "/v1/invoices", params={"customer": "beta"})["data"]
    assert [i["customer"]["name"] for i in only] == ["Beta"]
    assert catalog.ok("GET", "/v1/invoices", params={"customer": "nobody"})["data"] == []


# -- usage ---------------------------------------------------------------------------------
def test_usage_series_by_day_and_hour(catalog: Api, drain: Any) -> None:
    events = [ev("u1", ts="2026-10-10T10:05:00Z", tokens=100), ev("u2", ts="2026-10-10T10:55:00Z", tokens=50),
              ev("u3", ts="2026-10-10T13:00:00Z", tokens=7), ev("u4", ts="2026-10-12T00:00:00Z", tokens=1)]
    catalog.ok("POST", "/v1/events", events_body(*events), key="ingest")
    drain()
    day = catalog.ok("GET", "/v1/customers/acme/usage", key="read",
                     params={"from": OCT, "to": NOV, "meter": "tokens", "window": "day"})
    assert (day["customer"], day["window"], day["from"], day["to"]) == ("acme", "day", OCT, NOV)
    assert [m["meter"] for m in day["meters"]] == ["tokens"]
    assert day["meters"][0]["aggregation"] == "sum"
    assert [(p["start"], p["end"], p["value"], p["events"]) for p in day["meters"][0]["points"]] == [
        ("2026-10-10T00:00:00Z", "2026-10-11T00:00:00Z", "157", 3),
        ("2026-10-12T00:00:00Z", "2026-10-13T00:00:00Z", "1", 1)]
    hour = catalog.ok("GET", "/v1/customers/acme/usage", key="read",
                      params={"from": "2026-10-10T00:00:00Z", "to": "2026-10-11T00:00:00Z",
                              "meter": "tokens", "window": "hour"})
    assert [(p["start"], p["value"]) for p in hour["meters"][0]["points"]] == [
        ("2026-10-10T10:00:00Z", "150"), ("2026-10-10T13:00:00Z", "7")]
    both = catalog.ok("GET", "/v1/customers/acme/usage", params={"from": OCT, "to": NOV})
    assert sorted(m["meter"] for m in both["meters"]) == ["calls", "tokens"]
    calls = next(m for m in both["meters"] if m["meter"] == "calls")
    assert [p["value"] for p in calls["points"]] == ["3", "1"]


@pytest.mark.parametrize("params,field", [({"window": "quarter"}, "window"), ({"window": "minute"}, "window"),
                                          ({"meter": "nope"}, "meter"), ({"from": "garbage"}, "from"),
                                          ({"from": NOV, "to": OCT}, "from")])
def test_usage_bad_query_names_field(catalog: Api, params: dict[str, str], field: str) -> None:
    err = error(catalog.get("/v1/customers/acme/usage", params=params), 400)
    assert err["field"] == field


def test_usage_of_unknown_customer_is_404(catalog: Api) -> None:
    assert error(catalog.get("/v1/customers/nobody/usage"), 404)["code"] == "not_found"


# -- OpenAPI -------------------------------------------------------------------------------
def test_openapi_document_lists_v1_paths(api: Api) -> None:
    resp = api.get("/v1/openapi.json", key=None)
    assert resp.status_code == 200, resp.text[:300]
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "meterbill API"
    paths = doc["paths"]
    for path in ("/v1/events", "/v1/meters/{code}", "/v1/plans/{code}", "/v1/customers/{customer_id}",
                 "/v1/customers/{customer_id}/usage", "/v1/billing-runs", "/v1/invoices",
                 "/v1/invoices/{invoice_id}"):
        assert path in paths, path
    assert "put" in paths["/v1/plans/{code}"] and "post" in paths["/v1/events"]
    assert "/v1/openapi.json" not in paths


def test_swagger_ui_is_served(api: Api) -> None:
    resp = api.get("/v1/docs", key=None)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"].startswith("text/html")
    assert "swagger" in resp.text.lower()


def test_upcoming_invoice_over_http(catalog: Api, drain: Any) -> None:
    catalog.ok("POST", "/v1/events", events_body(ev("up1", ts="2026-11-02T09:00:00Z", tokens=10)), key="ingest")
    drain()
    doc = catalog.ok("GET", "/v1/customers/acme/upcoming-invoice", key="read")
    assert (doc["status"], doc["number"], doc["period"]["start"]) == ("upcoming", None, "2026-11-01T00:00:00Z")
    assert [ln["amount"] for ln in doc["lines"]][1] == "0.10" and isinstance(doc["total"], str)
    assert catalog.get("/v1/customers/acme/upcoming-invoice", key="ingest").status_code == 403
    assert catalog.get("/v1/customers/nobody/upcoming-invoice", key="read").status_code == 404


def test_invoice_lifecycle_after_finalization(catalog: Api, drain: Any) -> None:
    catalog.ok("POST", "/v1/events", events_body(ev("lc1", tokens=5)), key="ingest")
    drain()
    catalog.billing_run({"as_of": NOV})
    inv = catalog.ok("GET", "/v1/invoices", key="read", params={"customer": "acme"})["data"][0]
    path = f"/v1/invoices/{inv['id']}"
    assert catalog.get(f"{path}/mark-paid", key="read").status_code in (404, 405)
    unc = catalog.ok("POST", f"{path}/mark-uncollectible", {"reference": "collections #12"})
    assert (unc["status"], unc["uncollectible_reference"]) == ("uncollectible", "collections #12")
    paid = catalog.ok("POST", f"{path}/mark-paid", {"reference": "wire 8812", "at": "2026-11-20T10:00:00Z"})
    assert (paid["status"], paid["paid_at"], paid["number"], paid["total"]) == (
        "paid", "2026-11-20T10:00:00Z", inv["number"], inv["total"])
    assert catalog.ok("POST", f"{path}/mark-paid", {})["status"] == "paid"  # retried: harmless
    assert error(catalog.post(f"{path}/void", {}), 409)["field"] == "status"
    assert error(catalog.post(f"{path}/refund", {}), 400)["field"] == "action"
    assert error(catalog.post("/v1/invoices/in_nope/void", {}), 404)["code"] == "not_found"
    assert catalog.post(f"{path}/void", {}, key="read").status_code == 403


def test_simulation_reprices_past_periods_without_storing(catalog: Api, drain: Any) -> None:
    catalog.ok("POST", "/v1/events", events_body(*[ev(f"s{i}", tokens=300) for i in range(5)]), key="ingest")
    drain()
    catalog.billing_run({"as_of": NOV})
    candidate = {"currency": "USD", "base_fee": "29.00", "charges": [
        {"meter": "tokens", "model": "package", "package_size": "1000", "package_amount": "8.00"}]}
    sim = catalog.ok("POST", "/v1/simulations", {"plan": candidate, "customers": ["acme"], "periods": 2})
    # old: 49 + 12.50 + 0.01 = 61.51; new: 29 + 2 packages (1500 tokens) x 8 = 45.00
    assert sim["customers"][0]["periods"][0]["old_subtotal"] == "61.51"
    assert (sim["old_subtotal"], sim["new_subtotal"], sim["difference"]) == ("61.51", "45.00", "-16.51")
    assert len(catalog.ok("GET", "/v1/invoices", key="read", params={"customer": "acme"})["data"]) == 1
    bad = dict(candidate, charges=[{"meter": "nope", "model": "per_unit", "unit_amount": "1"}])
    assert error(catalog.post("/v1/simulations", {"plan": bad}), 400)["field"] == "plan.charges[0].meter"
    eur = dict(candidate, currency="EUR")
    assert error(catalog.post("/v1/simulations", {"plan": eur}), 400)["field"] == "plan.currency"
    assert catalog.post("/v1/simulations", {"plan": candidate}, key="read").status_code == 403
    twice = error(catalog.post("/v1/simulations", {"plan": candidate, "customers": ["acme", "acme"]}), 400)
    assert twice["field"] == "customers" and "'acme' more than once" in twice["message"]


# -- the usage behind an invoice line ------------------------------------------------------
@pytest.fixture
def ml_invoice(api: Api, drain: Any) -> str:
    """Customer 'lab': GPU seconds summed per gpu (dimension group) and peak memory (max), closed for October."""
    api.ok("PUT", "/v1/meters/gpu", {"event_type": "gpu.run", "aggregation": "sum", "property": "seconds",
                                     "group_by": ["gpu"], "unit": "s"})
    api.ok("PUT", "/v1/meters/mem", {"event_type": "gpu.run", "aggregation": "max", "property": "gb"})
    api.ok("PUT", "/v1/plans/ml", {"currency": "USD", "base_fee": "10.00", "charges": [
        {"meter": "gpu", "model": "per_unit", "unit_amount": "0.001"},
        {"meter": "mem", "model": "per_unit", "unit_amount": "1"}]})
    api.ok("PUT", "/v1/customers/lab", {"name": "Lab", "plan": "ml", "started_at": OCT, "billing_anchor": OCT})
    run = [("g1", "2026-10-10T10:01:00Z", "h100", "12.5", 4), ("g2", "2026-10-10T10:07:00Z", "h100", "7.25", 9),
           ("g3", "2026-10-10T10:20:00Z", "a10g", "3", 6), ("g4", "2026-10-31T23:59:59Z", "h100", "1.125", 2),
           ("g5", "2026-10-31T23:50:00Z", None, "2", 1), ("g6", "2026-11-01T00:00:00Z", "h100", "99", 99)]
    events = [ev(i, "lab", ts, "gpu.run", seconds=s, gb=gb, **({"gpu": g} if g else {}))
              for i, ts, g, s, gb in run]
    assert api.ok("POST", "/v1/events", {"events": events}, key="ingest")["accepted"] == 6
    drain()
    return api.billing_run({"as_of": NOV})["invoices_created"][0]


def test_usage_behind_a_line_sums_to_its_quantity(api: Api, ml_invoice: str) -> None:
    inv = api.ok("GET", f"/v1/invoices/{ml_invoice}", key="read")
    # g6 lies in November: 12.5 + 7.25 + 3 + 1.125 + 2 = 25.875 s x 0.001 = 0.025875 -> 0.03; peak memory 9 GB
    assert [(ln.get("meter"), ln.get("quantity"), ln["amount"]) for ln in inv["lines"]] == [
        (None, None, "10.00"), ("gpu", "25.875", "0.03"), ("mem", "9", "9.00")]
    gpu = api.ok("GET", f"/v1/invoices/{ml_invoice}/lines/1/usage", key="read")
    assert (gpu["meter"], gpu["aggregation"], gpu["unit"], gpu["period"]) == ("gpu", "sum", "s", inv["period"])
    assert (gpu["quantity"], gpu["total"], gpu["events"], gpu["next_cursor"]) == ("25.875", "25.875", 5, None)
    assert [(b["start"], b["group"], b["value"], b["events"]) for b in gpu["buckets"]] == [
        ("2026-10-10T10:00:00Z", {"gpu": "h100"}, "19.75", 2), ("2026-10-10T10:15:00Z", {"gpu": "a10g"}, "3", 1),
        ("2026-10-31T23:45:00Z", {"gpu": "h100"}, "1.125", 1), ("2026-10-31T23:45:00Z", {"gpu": None}, "2", 1)]
    assert sum(Decimal(b["value"]) for b in gpu["buckets"]) == Decimal(gpu["quantity"])
    # a max meter: per-bucket maxima, and the total is their max (the rating's roll-up), not their sum
    mem = api.ok("GET", f"/v1/invoices/{ml_invoice}/lines/2/usage", key="read")
    assert [b["value"] for b in mem["buckets"]] == ["9", "6", "2"] and mem["total"] == mem["quantity"] == "9"


def test_usage_behind_a_line_is_paginated(api: Api, ml_invoice: str) -> None:
    path, seen, cursor = f"/v1/invoices/{ml_invoice}/lines/1/usage", [], None
    for _ in range(3):
        page = api.ok("GET", path, key="read", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert page["total"] == "25.875"  # always over the whole period
        seen += page["buckets"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(seen), cursor] == [4, None] and sum(Decimal(b["value"]) for b in seen) == Decimal("25.875")
    assert error(api.get(path, key="read", params={"cursor": "abc"}), 400)["field"] == "cursor"
    assert error(api.get(path, key="read", params={"limit": 1001}), 400)["field"].endswith("limit")


def test_usage_of_a_line_without_meter_or_index_names_index(api: Api, ml_invoice: str) -> None:
    err = error(api.get(f"/v1/invoices/{ml_invoice}/lines/0/usage", key="read"), 404)
    assert err["field"] == "index" and "line 0" in err["message"] and "not metered" in err["message"]
    err = error(api.get(f"/v1/invoices/{ml_invoice}/lines/3/usage", key="read"), 404)
    assert err["field"] == "index" and "index 3" in err["message"]
    assert error(api.get(f"/v1/invoices/{ml_invoice}/lines/x/usage", key="read"), 400)["field"] == "index"
    assert error(api.get("/v1/invoices/in_nope/lines/0/usage", key="read"), 404)["field"] == "id"
    assert api.get(f"/v1/invoices/{ml_invoice}/lines/1/usage", key="ingest").status_code == 403


def test_line_usage_route_does_not_collide_with_its_neighbours(api: Api, ml_invoice: str) -> None:
    base = f"/v1/invoices/{ml_invoice}"
    assert api.get(f"{base}.pdf", key="read").headers["content-type"] == "application/pdf"
    assert api.get(f"{base}.html", key="read").headers["content-type"].startswith("text/html")
    assert api.ok("GET", base, key="read")["id"] == ml_invoice
    assert "buckets" in api.ok("GET", f"{base}/lines/1/usage", key="read")
    for path in (f"{base}/lines/1/usage.pdf", f"{base}/lines/1/usage.html", f"{base}/lines/1",
                 f"{base}/lines/1/usage/x", f"{base}/lines"):
        assert api.get(path, key="read").status_code == 404, path
    assert api.post(f"{base}/lines/1/usage", {}).status_code in (404, 405)
    assert api.ok("POST", f"{base}/mark-paid", {})["status"] == "paid"  # the action route still answers
    assert "buckets" in api.ok("GET", f"{base}/lines/1/usage", key="read")  # and a paid invoice still traces
