"""Reports across customers (usage, revenue, aging) on a hand-built set of invoices in moto, as
JSON and CSV; and the customer usage series' windows (DST in the customer's timezone), group_by
and compare=previous. The clock is the FakeClock (2026-11-05T12:00Z): nothing reads today's date."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meterbill.local.seed import customer_item, invoice_doc, invoice_item, put_items
from tests.integration.test_api import (ACME, METER_CALLS, METER_TOKENS, PLAN_PRO, Api, api, catalog,  # noqa: F401
                                        error, events_body)
from tests.conftest import ev

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def d(*args: int, tz: Any = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)


def berlin_month(year: int, month: int) -> tuple[datetime, datetime]:
    nxt = (year + month // 12, month % 12 + 1)
    return d(year, month, 1, tz=BERLIN).astimezone(UTC), d(*nxt, 1, tz=BERLIN).astimezone(UTC)


@pytest.fixture
def ledger(api: Api, ddb: Any) -> Api:
    """acme (USD, enterprise), beta (EUR, Europe/Berlin, smb), gamma (USD, no tags) and 8 invoices:
    paid, open, overdue at various ages, credited, prepaid credit drawn, uncollectible, void, draft."""
    put_items(ddb, "t-billing", [
        customer_item("acme", tags={"segment": "enterprise"}),
        customer_item("beta", plan="starter", currency="EUR", timezone="Europe/Berlin", tags={"segment": "smb"}),
        customer_item("gamma")])
    docs = [
        invoice_doc("acme", 1, d(2026, 9, 1), d(2026, 10, 1), total="100.00", status="paid",
                    paid_at=d(2026, 10, 10), usage={"tokens": "1000"}),
        invoice_doc("acme", 2, d(2026, 10, 1), d(2026, 11, 1), total="250.00", usage={"tokens": "3000", "calls": "10"}),
        invoice_doc("beta", 3, *berlin_month(2026, 9), plan="starter", currency="EUR", total="80.00",
                    usage={"tokens": "700"}),
        invoice_doc("beta", 4, *berlin_month(2026, 6), plan="starter", currency="EUR", total="40.00",
                    credits_applied="10.00"),
        invoice_doc("gamma", 5, d(2026, 8, 1), d(2026, 9, 1), total="60.00", status="uncollectible",
                    uncollectible_at="2026-10-20T00:00:00Z", usage={"tokens": "200"}),
        invoice_doc("gamma", 6, d(2026, 7, 1), d(2026, 8, 1), total="30.00", credited="5.00", usage={"tokens": "500"}),
        invoice_doc("acme", 7, d(2026, 8, 1), d(2026, 9, 1), total="999.00", status="void",
                    void_at="2026-09-02T00:00:00Z", usage={"tokens": "9999"}),
        invoice_doc("gamma", 8, d(2026, 10, 1), d(2026, 11, 1), total="7.00", status="draft", usage={"tokens": "1"}),
    ]
    put_items(ddb, "t-billing", [invoice_item(doc) for doc in docs])
    return api


RANGE = {"from": "2026-05-01T00:00:00Z", "to": "2026-11-05T00:00:00Z"}


def test_revenue_per_currency_never_mixes_currencies(ledger: Api) -> None:
    rep = ledger.ok("GET", "/v1/reports/revenue", params={**RANGE, "group_by": "currency"}, key="read")
    assert rep["columns"] == ["currency", "invoices", "billed", "credits_applied", "credited", "collected",
                              "outstanding", "uncollectible"]
    assert rep["rows"] == [
        {"currency": "EUR", "invoices": 2, "billed": "120.00", "credits_applied": "10.00", "credited": "0.00",
         "collected": "0.00", "outstanding": "110.00", "uncollectible": "0.00"},
        {"currency": "USD", "invoices": 4, "billed": "440.00", "credits_applied": "0.00", "credited": "5.00",
         "collected": "100.00", "outstanding": "275.00", "uncollectible": "60.00"}]
    assert rep["totals"] == rep["rows"]
    assert rep["read"]["items"] == 8   # every stored invoice read once, nothing else


def test_revenue_by_period_uses_the_customers_timezone(ledger: Api) -> None:
    rep = ledger.ok("GET", "/v1/reports/revenue", params=RANGE, key="read")
    assert rep["group_by"] == "period"
    assert [(r["period"], r["currency"], r["billed"], r["collected"], r["outstanding"]) for r in rep["rows"]] == [
        ("2026-06", "EUR", "40.00", "0.00", "30.00"),
        ("2026-07", "USD", "30.00", "0.00", "25.00"),
        ("2026-08", "USD", "60.00", "0.00", "0.00"),
        ("2026-09", "EUR", "80.00", "0.00", "80.00"),   # beta's September starts 2026-08-31T22:00Z
        ("2026-09", "USD", "100.00", "100.00", "0.00"),
        ("2026-10", "USD", "250.00", "0.00", "250.00")]


def test_revenue_by_segment_and_plan(ledger: Api) -> None:
    seg = ledger.ok("GET", "/v1/reports/revenue", params={**RANGE, "group_by": "segment"}, key="read")
    assert [(r["tag:segment"], r["currency"], r["billed"]) for r in seg["rows"]] == [
        ("(none)", "USD", "90.00"), ("enterprise", "USD", "350.00"), ("smb", "EUR", "120.00")]
    plan = ledger.ok("GET", "/v1/reports/revenue", params={**RANGE, "group_by": "plan", "currency": "EUR"},
                     key="read")
    assert [(r["plan"], r["billed"]) for r in plan["rows"]] == [("starter", "120.00")]


def test_revenue_of_one_customer_reads_only_its_range(ledger: Api) -> None:
    rep = ledger.ok("GET", "/v1/reports/revenue", key="read",
                    params={"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "customer": "acme",
                            "group_by": "customer"})
    assert [(r["customer"], r["billed"], r["outstanding"]) for r in rep["rows"]] == [("acme", "250.00", "250.00")]
    assert rep["read"]["items"] == 1



def test_top_customers_by_revenue(ledger: Api) -> None:
    rep = ledger.ok("GET", "/v1/reports/revenue", params={**RANGE, "group_by": "customer"}, key="read")
    assert [(r["currency"], r["customer"], r["billed"]) for r in rep["rows"]] == [
        ("EUR", "beta", "120.00"), ("USD", "acme", "350.00"), ("USD", "gamma", "90.00")]


def test_aging_today_and_at_an_earlier_date(ledger: Api) -> None:
    now = ledger.ok("GET", "/v1/reports/aging", key="read")
    assert now["as_of"] == "2026-11-05T12:00:00Z"
    assert [(r["currency"], r["current"], r["d1_30"], r["d31_60"], r["d61_90"], r["d90_plus"], r["total"],
             r["invoices"]) for r in now["rows"]] == [
        ("EUR", "0.00", "80.00", "0.00", "0.00", "30.00", "110.00", 2),
        ("USD", "250.00", "0.00", "0.00", "25.00", "0.00", "275.00", 2)]
    then = ledger.ok("GET", "/v1/reports/aging", params={"as_of": "2026-10-05T00:00:00Z"}, key="read")
    # acme's September was open until paid on 10-10; gamma's August until written off on 10-20
    assert [(r["currency"], r["current"], r["d1_30"], r["d31_60"], r["d61_90"], r["total"]) for r in then["rows"]] == [
        ("EUR", "80.00", "0.00", "0.00", "30.00", "110.00"),
        ("USD", "100.00", "60.00", "25.00", "0.00", "185.00")]
    by_customer = ledger.ok("GET", "/v1/reports/aging", params={"group_by": "customer"}, key="read")
    assert [(r["customer"], r["total"]) for r in by_customer["rows"]] == [
        ("acme", "250.00"), ("beta", "110.00"), ("gamma", "25.00")]


def test_usage_top_customers_and_by_meter(ledger: Api) -> None:
    top = ledger.ok("GET", "/v1/reports/usage", params={**RANGE, "meter": "tokens", "limit": 2}, key="read")
    assert [(r["customer"], r["quantity"], r["invoices"]) for r in top["rows"]] == [("acme", "4000", 2),
                                                                                    ("beta", "700", 1)]
    by_meter = ledger.ok("GET", "/v1/reports/usage", params={**RANGE, "group_by": "meter"}, key="read")
    assert by_meter["columns"] == ["meter", "unit", "quantity", "invoices"]
    assert [(r["meter"], r["quantity"]) for r in by_meter["rows"]] == [("calls", "10"), ("tokens", "5400")]
    seg = ledger.ok("GET", "/v1/reports/usage", params={**RANGE, "group_by": "segment", "meter": "tokens"},
                    key="read")
    assert [(r["tag:segment"], r["quantity"]) for r in seg["rows"]] == [
        ("enterprise", "4000"), ("(none)", "700"), ("smb", "700")]


@pytest.mark.parametrize("how", [{"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}])
def test_csv_round_trips_the_json_rows(ledger: Api, how: dict[str, Any]) -> None:
    params = {**RANGE, "group_by": "customer", **how.get("params", {})}
    resp = ledger.get("/v1/reports/revenue", key="read", params=params, headers=how.get("headers"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"].startswith("attachment;")
    assert resp.text.startswith("customer,currency,invoices,billed,") and "\r\n" in resp.text
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    as_json = ledger.ok("GET", "/v1/reports/revenue", params={**RANGE, "group_by": "customer"}, key="read")
    assert rows == [{k: str(v) for k, v in r.items()} for r in as_json["rows"]]


def test_csv_quotes_what_needs_quoting(ledger: Api, ddb: Any) -> None:
    put_items(ddb, "t-billing", [customer_item("delta", tags={"segment": 'Big, "quoted"\nline'})])
    put_items(ddb, "t-billing", [invoice_item(invoice_doc("delta", 9, d(2026, 9, 1), d(2026, 10, 1), total="1.10"))])
    text = ledger.get("/v1/reports/revenue", key="read", params={**RANGE, "group_by": "segment",
                                                                 "format": "csv"}).text
    assert '"Big, ""quoted""\nline",USD,1,1.10,' in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["tag:segment"] for r in rows} == {"(none)", "enterprise", "smb", 'Big, "quoted"\nline'}


@pytest.mark.parametrize("path,params,field", [
    ("/v1/reports/revenue", {"group_by": "planet"}, "group_by"),
    ("/v1/reports/revenue", {"currency": "euro"}, "currency"),
    ("/v1/reports/revenue", {"from": "2026-11-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, "from"),
    ("/v1/reports/usage", {"limit": "0"}, "limit"),
    ("/v1/reports/usage", {"group_by": "period"}, "group_by"),
    ("/v1/reports/aging", {"as_of": "yesterday"}, "as_of"),
    ("/v1/reports/aging", {"format": "xml"}, "format")])
def test_bad_report_query_names_the_field(ledger: Api, path: str, params: dict[str, str], field: str) -> None:
    assert error(ledger.get(path, params=params, key="read"), 400)["field"] == field


# -- customer tags --------------------------------------------------------------------------
def test_customer_tags_are_validated_and_kept(catalog: Api) -> None:
    doc = catalog.ok("PUT", "/v1/customers/acme", {**ACME, "tags": {"segment": "enterprise", "region": "eu"}})
    assert doc["tags"] == {"segment": "enterprise", "region": "eu"}
    assert catalog.ok("GET", "/v1/customers/acme")["tags"] == {"segment": "enterprise", "region": "eu"}
    for tags, field in [({"Segment": "x"}, "tags.Segment"), ({"segment": ""}, "tags.segment"),
                        ({f"k{i}": "v" for i in range(11)}, "tags")]:
        assert error(catalog.put("/v1/customers/acme", {**ACME, "tags": tags}), 400)["field"] == field


# -- the customer usage series -------------------------------------------------------------------
@pytest.fixture
def berlin(api: Api, drain: Any) -> Api:
    """acme in Europe/Berlin, with usage around the end of summer time (2026-10-25 03:00 CEST → 02:00 CET)."""
    catalog = api
    catalog.ok("PUT", "/v1/meters/tokens", {**METER_TOKENS, "group_by": ["region"]})
    catalog.ok("PUT", "/v1/meters/calls", METER_CALLS)
    catalog.ok("PUT", "/v1/plans/pro", PLAN_PRO)
    catalog.ok("PUT", "/v1/customers/acme", {**ACME, "timezone": "Europe/Berlin"})
    events = [ev("a", ts="2026-10-24T21:30:00Z", tokens=1, region="eu"),    # 23:30 CEST on the 24th
              ev("b", ts="2026-10-24T22:30:00Z", tokens=10, region="eu"),   # 00:30 CEST on the 25th
              ev("c", ts="2026-10-25T22:30:00Z", tokens=100, region="us"),  # 23:30 CET on the 25th
              ev("e", ts="2026-10-25T23:30:00Z", tokens=1000, region="eu"),  # 00:30 CET on the 26th
              ev("f", ts="2026-10-18T10:00:00Z", tokens=5, region="eu")]    # the week before
    catalog.ok("POST", "/v1/events", events_body(*events), key="ingest")
    drain()
    return catalog


def points(series: dict[str, Any], meter: str = "tokens") -> list[tuple[str, str, str]]:
    entry = next(m for m in series["meters"] if m["meter"] == meter)
    return [(p["start"], p["end"], p["value"]) for p in entry["points"]]


def test_day_windows_are_local_days_across_a_dst_change(berlin: Api) -> None:
    s = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-24T00:00:00Z", "to": "2026-10-27T00:00:00Z", "meter": "tokens", "window": "day"})
    assert s["timezone"] == "Europe/Berlin"
    assert points(s) == [("2026-10-23T22:00:00Z", "2026-10-24T22:00:00Z", "1"),
                         ("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z", "110"),   # 25 hours
                         ("2026-10-25T23:00:00Z", "2026-10-26T23:00:00Z", "1000")]


def test_week_and_month_windows(berlin: Api) -> None:
    week = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-12T00:00:00Z", "to": "2026-10-31T00:00:00Z", "meter": "tokens", "window": "week"})
    # weeks start on Monday 00:00 local: 10-12 CEST, 10-19 CEST, 10-26 CET (Sunday 10-18 is in the first)
    assert points(week) == [("2026-10-11T22:00:00Z", "2026-10-18T22:00:00Z", "5"),
                            ("2026-10-18T22:00:00Z", "2026-10-25T23:00:00Z", "111"),
                            ("2026-10-25T23:00:00Z", "2026-11-01T23:00:00Z", "1000")]
    month = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "meter": "tokens", "window": "month"})
    assert points(month) == [("2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z", "1116")]


def test_group_by_a_dimension(berlin: Api) -> None:
    s = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-24T00:00:00Z", "to": "2026-10-27T00:00:00Z", "meter": "tokens", "window": "day",
        "group_by": "region"})
    entry = s["meters"][0]
    assert [(p["start"], p["group"], p["value"]) for p in entry["points"]] == [
        ("2026-10-23T22:00:00Z", {"region": "eu"}, "1"), ("2026-10-24T22:00:00Z", {"region": "eu"}, "10"),
        ("2026-10-24T22:00:00Z", {"region": "us"}, "100"), ("2026-10-25T23:00:00Z", {"region": "eu"}, "1000")]
    assert entry["totals"] == [{"group": {"region": "eu"}, "value": "1011"}, {"group": {"region": "us"}, "value": "100"}]
    legacy = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-24T00:00:00Z", "to": "2026-10-27T00:00:00Z", "meter": "tokens", "group_by": "true"})
    assert len(legacy["meters"][0]["points"]) == 4
    err = error(berlin.get("/v1/customers/acme/usage", key="read", params={"meter": "tokens", "group_by": "model"}),
                400)
    assert err["field"] == "group_by" and "region" in err["message"]


def test_compare_with_the_previous_period(berlin: Api) -> None:
    s = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-24T22:00:00Z", "to": "2026-10-25T23:00:00Z", "meter": "tokens", "window": "day",
        "compare": "previous"})
    # one local day (25 hours) now; the previous one is the 24th (24 hours)
    assert (s["previous"]["from"], s["previous"]["to"]) == ("2026-10-23T22:00:00Z", "2026-10-24T22:00:00Z")
    assert points(s["previous"]) == [("2026-10-23T22:00:00Z", "2026-10-24T22:00:00Z", "1")]
    assert s["change"] == [{"meter": "tokens", "current": "110", "previous": "1", "change": "109",
                            "change_pct": "10900.00"}]
    week = berlin.ok("GET", "/v1/customers/acme/usage", key="read", params={
        "from": "2026-10-25T23:00:00Z", "to": "2026-11-01T23:00:00Z", "meter": "tokens", "window": "week",
        "compare": "previous"})
    assert week["previous"]["from"] == "2026-10-18T22:00:00Z"
    assert week["change"][0]["previous"] == "111" and week["change"][0]["current"] == "1000"
