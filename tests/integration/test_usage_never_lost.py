"""Usage that must never go unbilled (issue 7, sections 2 and 3), through the real services on moto:
late usage in a shortened first period, late usage for several periods in one stream batch, a
subscription that starts off the 15-minute grid, a meter created just before its first events,
one customer's failure during a run, long backdated subscriptions, and unique_count buckets with
more distinct values than a DynamoDB item holds."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import ev, standard_catalog, usage_cell

NOV, DEC = "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"


def body(*events: dict[str, Any]) -> str:
    return json.dumps({"events": list(events)})


def send(container: Any, drain: Any, *events: dict[str, Any]) -> None:
    res = container.ingest.ingest(body(*events), None)
    assert res.errors == [] and res.accepted == len(events), res
    drain()


def close(container: Any, as_of: str) -> Any:
    return container.billing.run(datetime.fromisoformat(as_of))


def invoice_for(container: Any, customer: str, start: str) -> dict[str, Any]:
    found = [i for i in container.billing_store.list_invoices(customer, 100, None)[0]
             if i["period"]["start"] == start]
    assert len(found) == 1, found
    return found[0]


def line(doc: dict[str, Any], meter: str) -> dict[str, Any]:
    [found] = [ln for ln in doc["lines"] if ln.get("meter") == meter]
    return found


def late_markers(container: Any, customer: str) -> list[str]:
    return [m["sk"] for m in container.billing_store.customer_items("late", customer)]


@pytest.fixture
def catalog(container: Any) -> Any:
    return standard_catalog(container)


# -- late usage in a shortened first period -------------------------------------------------
def test_late_usage_in_a_shortened_first_period_is_billed(container: Any, catalog: Any, drain: Any,
                                                          clock: Any) -> None:
    catalog.put_customer("beta", {"name": "Beta", "plan": "pro", "started_at": "2026-10-10T00:00:00Z",
                                  "billing_anchor": "2026-10-01T00:00:00Z"})
    send(container, drain, ev(1, customer="beta", ts="2026-10-15T00:00:00Z", tokens=500))
    close(container, NOV)
    first = invoice_for(container, "beta", "2026-10-10T00:00:00Z")
    assert line(first, "tokens")["quantity"] == "500"
    send(container, drain, ev("late", customer="beta", ts="2026-10-20T00:00:00Z", tokens=700))
    # the marker is keyed like the invoice: by the shortened period's start
    assert late_markers(container, "beta") == ["LATE#2026-10-10T00:00:00Z"]
    clock.advance(days=30)
    close(container, DEC)
    november = invoice_for(container, "beta", NOV)
    # 1,200 tokens = 10.00 + 200 x 0.005 = 11.00, billed 5.00; calls 0.002 -> 0.00 (was 0.001 -> 0.00)
    [adjustment] = [ln for ln in november["lines"] if ln["type"] == "adjustment"]
    assert adjustment["amount"] == "6.00"
    assert adjustment["refers_to"] == {"invoice": first["id"], "number": first["number"]}
    assert late_markers(container, "beta") == []


def test_a_marker_keyed_by_the_full_first_period_is_still_settled(container: Any, catalog: Any, drain: Any,
                                                                  clock: Any) -> None:
    """Markers written before the fix carry the unclipped period start: they find their invoice."""
    catalog.put_customer("beta", {"name": "Beta", "plan": "pro", "started_at": "2026-10-10T00:00:00Z",
                                  "billing_anchor": "2026-10-01T00:00:00Z"})
    send(container, drain, ev(1, customer="beta", ts="2026-10-15T00:00:00Z", tokens=500))
    close(container, NOV)
    send(container, drain, ev("late", customer="beta", ts="2026-10-20T00:00:00Z", tokens=700))
    store = container.billing_store
    for sk in late_markers(container, "beta"):
        store.apply_changes([_delete_marker("beta", sk[5:])])
    store.mark_late("beta", "2026-10-01T00:00:00Z", "2026-11-05T12:00:00Z")  # the old key
    clock.advance(days=30)
    close(container, DEC)
    november = invoice_for(container, "beta", NOV)
    assert [ln["amount"] for ln in november["lines"] if ln["type"] == "adjustment"] == ["6.00"]
    assert late_markers(container, "beta") == []


def _delete_marker(customer: str, start: str) -> Any:
    from meterbill.ports import ItemChange

    return ItemChange("late", customer, start, None)


def test_a_late_marker_without_its_invoice_is_logged_and_kept(container: Any, catalog: Any, drain: Any,
                                                             clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    send(container, drain, ev(1, tokens=5))
    close(container, NOV)
    container.billing_store.mark_late("acme", "2026-10-15T00:00:00Z", "2026-11-05T12:00:00Z")  # no such invoice
    clock.advance(days=30)
    with caplog.at_level(logging.ERROR, logger="meterbill.services.late_usage"):
        close(container, DEC)
    assert any("2026-10-15T00:00:00Z" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert late_markers(container, "acme") == ["LATE#2026-10-15T00:00:00Z"]  # never dropped silently


# -- one stream batch, late usage for several closed periods ----------------------------------
def test_one_batch_with_late_usage_for_two_periods_marks_both(container: Any, catalog: Any, drain: Any,
                                                               clock: Any) -> None:
    clock.advance(days=30)  # 2026-12-05: October and November close
    send(container, drain, ev(1, tokens=100), ev(2, ts="2026-11-10T00:00:00Z", tokens=100))
    close(container, DEC)
    send(container, drain, ev("late-oct", ts="2026-10-20T00:00:00Z", tokens=700),
         ev("late-nov", ts="2026-11-20T00:00:00Z", tokens=900))  # one request, one stream batch
    assert late_markers(container, "acme") == ["LATE#2026-10-01T00:00:00Z", "LATE#2026-11-01T00:00:00Z"]
    clock.advance(days=31)
    close(container, "2027-01-01T00:00:00Z")
    december = invoice_for(container, "acme", DEC)
    # October 800 tokens: 8.00 - 1.00; November 1,000 tokens: 10.00 - 1.00 (calls stay under a cent)
    assert sorted(ln["amount"] for ln in december["lines"] if ln["type"] == "adjustment") == ["7.00", "9.00"]


def test_late_usage_in_a_later_period_rerates_its_base_fee_unprorated(container: Any, catalog: Any, drain: Any,
                                                                          clock: Any) -> None:
    """November (30 days) is re-rated as November, not as a part of the anchor's 31-day October."""
    clock.advance(days=30)  # 2026-12-05
    send(container, drain, ev(1, ts="2026-11-10T00:00:00Z", tokens=100))
    close(container, DEC)
    send(container, drain, ev("late", ts="2026-11-20T00:00:00Z", tokens=900))
    clock.advance(days=31)
    close(container, "2027-01-01T00:00:00Z")
    [adjustment] = [ln for ln in invoice_for(container, "acme", DEC)["lines"] if ln["type"] == "adjustment"]
    assert adjustment["amount"] == "9.00"  # 1,000 tokens 10.00 - 1.00; the 49.00 base fee unchanged
    assert [p["label"] for p in adjustment["parts"]] == ["tokens", "calls"]


# -- a subscription that starts off the 15-minute grid --------------------------------------
def test_usage_in_the_first_minutes_of_an_off_grid_start_is_billed_everywhere(container: Any, catalog: Any,
                                                                               drain: Any, clock: Any) -> None:
    start = "2026-10-10T10:07:00Z"  # inside the 10:00-10:15 bucket
    catalog.put_customer("gamma", {"name": "Gamma", "plan": "pro", "started_at": start})
    send(container, drain, ev(1, customer="gamma", ts="2026-10-10T10:10:00Z", tokens=100),
         ev(2, customer="gamma", ts="2026-10-20T00:00:00Z", tokens=200))
    # the running bill and the usage view
    assert line(container.billing.upcoming("gamma"), "tokens")["quantity"] == "300"
    series = container.usage.series("gamma", start, "2026-11-05T00:00:00Z", "tokens", "day")
    assert sum(int(p["value"]) for p in series["meters"][0]["points"]) == 300
    # the close and the usage behind the line
    clock.advance(days=6)  # 2026-11-11: the first period [10-10 10:07, 11-10 10:07) has ended
    close(container, "2026-11-10T10:07:00Z")
    first = invoice_for(container, "gamma", start)
    assert line(first, "tokens")["quantity"] == "300"
    index = first["lines"].index(line(first, "tokens"))
    assert container.usage.line_usage(first["id"], str(index))["total"] == "300"
    # late usage in that first bucket is marked under the invoice's period and re-rated with it
    send(container, drain, ev("late", customer="gamma", ts="2026-10-10T10:09:00Z", tokens=50))
    assert late_markers(container, "gamma") == [f"LATE#{start}"]
    clock.advance(days=30)
    close(container, "2026-12-10T10:07:00Z")
    second = invoice_for(container, "gamma", "2026-11-10T10:07:00Z")
    assert [ln["amount"] for ln in second["lines"] if ln["type"] == "adjustment"] == ["0.50"]  # 50 x 0.01


def test_a_bucket_straddling_an_off_grid_boundary_is_billed_once(container: Any, catalog: Any, drain: Any,
                                                                   clock: Any) -> None:
    """A bucket belongs to the period its start lies in (the first bucket to the first period)."""
    start = "2026-10-10T10:07:00Z"
    catalog.put_customer("gamma", {"name": "Gamma", "plan": "pro", "started_at": start})
    clock.advance(days=36)  # 2026-12-11
    send(container, drain, ev(1, customer="gamma", ts="2026-10-10T10:01:00Z", tokens=1),
         ev(2, customer="gamma", ts="2026-11-10T10:05:00Z", tokens=10),   # bucket 10:00 <  boundary 10:07
         ev(3, customer="gamma", ts="2026-11-10T10:20:00Z", tokens=100))  # bucket 10:15 >= boundary
    close(container, "2026-12-10T10:07:00Z")
    first = invoice_for(container, "gamma", start)
    second = invoice_for(container, "gamma", "2026-11-10T10:07:00Z")
    assert (line(first, "tokens")["quantity"], line(second, "tokens")["quantity"]) == ("11", "100")


# -- a meter created just before its first events -------------------------------------------
def test_events_right_after_a_new_meter_are_aggregated_by_it(ddb: Any, clock: Any) -> None:
    """API and aggregator are separate Lambdas, each with its own catalog cache (10 s)."""
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.local.stack import StreamPoller

    settings = Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-")
    api = bootstrap(settings, client=ddb, clock=clock)
    aggregator = bootstrap(settings, client=ddb, clock=clock)
    standard_catalog(api)

    def aggregate(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        aggregator.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    poller = StreamPoller(None, "t-events", aggregate)
    send(api, poller.drain, ev(1, tokens=5))  # the aggregator has now read (and cached) the meters
    api.catalog.put_meter("bytes", {"event_type": "api.call", "aggregation": "sum", "property": "bytes"})
    send(api, poller.drain, ev(2, tokens=5, bytes=64))
    buckets = api.billing_store.query_buckets("acme", 0, 2_000_000_000)
    assert {b.meter: b.state.sum for b in buckets if b.meter in ("tokens", "bytes")} == {"tokens": 10, "bytes": 64}


# -- one customer never stops a run for the others ------------------------------------------
def legacy_plan(container: Any, catalog: Any, code: str = "legacy") -> None:
    """A plan stored before the amount grammar (docs/decisions.md, 2026-12-01): a token price of
    10^40 that no client can save any more; rating it raises InvalidOperation (ingest's numeric range
    refuses the 10^40-token events that used to make a customer fail)."""
    doc = catalog.put_plan(code, {"currency": "USD", "base_fee": "49.00", "charges": [
        {"meter": "tokens", "model": "per_unit", "unit_amount": "1"}]})
    stored = {**doc, "charges": [{"meter": "tokens", "model": "per_unit", "unit_amount": "1" + "0" * 40}],
              "version": 2}
    container.billing_store.put_catalog("PLAN", code, stored, 1)


def test_one_customer_failing_never_stops_the_run_for_the_others(container: Any, catalog: Any, drain: Any) -> None:
    legacy_plan(container, catalog)
    for cid, plan in (("big", "legacy"), ("zeta", "pro")):
        catalog.put_customer(cid, {"name": cid, "plan": plan, "started_at": "2026-10-01T00:00:00Z"})
    send(container, drain, ev("b", customer="big", tokens=10), ev("z", customer="zeta", tokens=100))
    summary = close(container, NOV)  # due in id order: acme, big, zeta
    assert [e["customer"] for e in summary.errors] == ["big"]
    assert "InvalidOperation" in summary.errors[0]["error"]
    assert line(invoice_for(container, "zeta", "2026-10-01T00:00:00Z"), "tokens")["amount"] == "1.00"
    assert close(container, NOV).errors == summary.errors  # reported on every run, never silently dropped


def test_net_negative_usage_is_billed_as_zero_with_a_note(container: Any, catalog: Any, drain: Any) -> None:
    send(container, drain, ev(1, tokens=300), ev("refund", ts="2026-10-20T00:00:00Z", tokens=-500))
    summary = close(container, NOV)
    assert summary.errors == []
    inv = invoice_for(container, "acme", "2026-10-01T00:00:00Z")
    tokens = line(inv, "tokens")
    assert (tokens["quantity"], tokens["amount"]) == ("-200", "0.00")  # the real net, billed as zero
    assert [(p["label"], p["units"], p["amount"]) for p in tokens["parts"]] == [
        ("net usage -200 is below zero: billed as zero", "-200", "0")]
    assert inv["subtotal"] == "49.00"  # base fee; 2 calls 0.002 -> 0.00
    index = inv["lines"].index(tokens)
    assert container.usage.line_usage(inv["id"], str(index))["total"] == "-200"


def test_threshold_billing_goes_on_past_a_failing_customer(container: Any, catalog: Any, drain: Any) -> None:
    legacy_plan(container, catalog)
    for cid, plan in (("big", "legacy"), ("prog", "pro")):
        catalog.put_customer(cid, {"name": cid, "plan": plan, "started_at": NOV, "progressive_threshold": "10.00"})
    send(container, drain, ev("b", customer="big", ts="2026-11-02T00:00:00Z", tokens=10),
         ev("p", customer="prog", ts="2026-11-02T00:00:00Z", tokens=2000))
    summary = container.billing.run()  # as of now, 2026-11-05: November is open
    assert [e["customer"] for e in summary.errors] == ["big"]
    [threshold] = container.billing_store.list_invoices("prog", 10, None)[0]
    assert (threshold["kind"], threshold["subtotal"]) == ("threshold", "15.00")  # 10.00 + 1,000 x 0.005


# -- many ended periods in one run ----------------------------------------------------------
def test_sixty_ended_daily_periods_close_in_one_run(container: Any, catalog: Any, drain: Any) -> None:
    catalog.put_plan("daily", {"currency": "USD", "interval": "day", "base_fee": "1.00",
                               "charges": [{"meter": "calls", "model": "per_unit", "unit_amount": "0.10"}]})
    catalog.put_customer("d", {"name": "D", "plan": "daily", "started_at": "2026-09-05T00:00:00Z"})
    send(container, drain, *[ev(f"d{i}", customer="d", ts=f"2026-09-{5 + i:02d}T12:00:00Z", tokens=1)
                                  for i in range(20)])
    summary = close(container, "2026-11-04T00:00:00Z")  # backdated: 60 daily periods have ended
    assert summary.errors == []
    invoices = container.billing_store.list_invoices("d", 100, None)[0]
    assert len(invoices) == 60
    assert sum(float(i["subtotal"]) for i in invoices) == pytest.approx(60 * 1.00 + 20 * 0.10)


# -- unique_count buckets with more distinct values than an item holds -----------------------
def test_unique_count_bucket_with_12k_distinct_values_is_written_and_counted_exactly(container: Any, ddb: Any,
                                                                                      drain: Any) -> None:
    import uuid

    c = container.catalog
    c.put_meter("users", {"event_type": "login", "aggregation": "unique_count", "property": "user"})
    c.put_plan("seats", {"currency": "USD", "interval": "month",
                         "charges": [{"meter": "users", "model": "per_unit", "unit_amount": "0.01"}]})
    c.put_customer("uc", {"name": "UC", "plan": "seats", "started_at": "2026-10-01T00:00:00Z"})
    users = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"user-{i}")) for i in range(12_001)]  # 36 characters each
    first = [ev(f"a{i}", customer="uc", type_="login", ts="2026-10-10T10:05:00Z", user=u)
             for i, u in enumerate(users[:12_000])]  # ~456 KB of distinct values in one 15-minute bucket
    for i in range(0, len(first), 1000):
        assert container.ingest.ingest(body(*first[i:i + 1000]), None).accepted == 1000
    # another bucket: five users already seen (counted once) and one new
    send(container, drain, *[ev(f"b{i}", customer="uc", type_="login", ts="2026-10-11T08:00:00Z", user=u)
                             for i, u in enumerate(users[:5] + users[-1:])])
    _, cell = usage_cell(ddb, "uc", 1791626400, "users")  # 10-10 10:00Z
    assert int(cell["n"]["N"]) == 12_000 and cell["vp"]["L"]  # written, values paged out of the item
    assert sum(len(v) for v in cell.get("u", {"SS": []})["SS"]) <= 16_384
    close(container, NOV)
    inv = invoice_for(container, "uc", "2026-10-01T00:00:00Z")
    assert (line(inv, "users")["quantity"], line(inv, "users")["amount"]) == ("12001", "120.01")
    assert container.usage.line_usage(inv["id"], "0")["total"] == "12001"


def test_unique_values_paged_past_the_page_of_ids_count_once(container: Any, drain: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny limits (as in test_event_values): > 30 bytes inline are sealed into pages of <= 40 bytes,
    more than 3 pages into a page of ids; repeats, spaces and non-ASCII values count once each."""
    from meterbill.adapters import dynamo_usage
    from meterbill.local.stack import StreamPoller

    monkeypatch.setattr(dynamo_usage, "VALUES_INLINE", 30)
    monkeypatch.setattr(dynamo_usage, "PAGE_MAX", 40)
    monkeypatch.setattr(dynamo_usage, "REFS_MAX", 3)
    c = container.catalog
    c.put_meter("users", {"event_type": "login", "aggregation": "unique_count", "property": "user"})
    c.put_plan("seats", {"currency": "USD", "interval": "month",
                         "charges": [{"meter": "users", "model": "per_unit", "unit_amount": "1"}]})
    c.put_customer("uc", {"name": "UC", "plan": "seats", "started_at": "2026-10-01T00:00:00Z"})
    users = [f"user {i} é" for i in range(40)]
    events = [ev(f"a{i}", customer="uc", type_="login", ts="2026-10-10T10:05:00Z", user=users[i % 40])
              for i in range(100)]  # 40 distinct values, each 2-3 times
    assert container.ingest.ingest(body(*events), None).accepted == 100

    def aggregate(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        container.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    StreamPoller(None, "t-events", aggregate, batch_size=7).drain()
    [item] = container.billing_store.get_usage_items([("uc", 1791626400, "users", "")]).values()
    assert any(p[0] == "r" for p in item.pages[1791626400])
    close(container, NOV)
    assert line(invoice_for(container, "uc", "2026-10-01T00:00:00Z"), "users")["quantity"] == "40"
