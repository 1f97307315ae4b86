"""Metering -> aggregation -> close -> invoice on moto, through the real services and adapters."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import ev, standard_catalog, usage_cell

OCT, NOV = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"


def body(*events: dict[str, Any]) -> str:
    return json.dumps({"events": list(events)})


@pytest.fixture
def catalog(container: Any) -> Any:
    return standard_catalog(container)


def close(container: Any, as_of: str = NOV) -> Any:
    return container.billing.run(datetime.fromisoformat(as_of))


def invoices(container: Any, customer: str = "acme") -> list[dict[str, Any]]:
    return container.billing_store.list_invoices(customer, 100, None)[0]


def test_events_to_invoice_with_exact_amounts(container: Any, catalog: Any, drain: Any) -> None:
    res = container.ingest.ingest(body(*[ev(i, tokens=300) for i in range(5)]), "application/json")
    assert (res.accepted, res.duplicates, res.errors) == (5, 0, [])
    drain()
    summary = close(container)
    assert len(summary.invoices) == 1
    inv = invoices(container)[0]
    # 1500 tokens: 1000 x 0.01 + 500 x 0.005 = 12.50; 5 calls x 0.001 = 0.005 -> 0.01 (half-up)
    assert [ln["amount"] for ln in inv["lines"]] == ["49.00", "12.50", "0.01"]
    assert (inv["subtotal"], inv["total"], inv["number"], inv["status"]) == ("61.51", "61.51", "T-000001", "final")
    assert inv["due_at"] == "2026-11-20T12:00:00Z"   # net 15 from the commit (the clock: 11-05 12:00)
    tiers = inv["lines"][1]["tiers"]
    assert [(t["units"], t["amount"]) for t in tiers] == [("1000", "10.00"), ("500", "2.500")]


def test_duplicates_in_any_batch_are_counted_once(container: Any, catalog: Any, drain: Any) -> None:
    events = [ev(i, tokens=10) for i in range(30)]
    assert container.ingest.ingest(body(*events[:20]), None).accepted == 20
    again = container.ingest.ingest(body(*events[10:], events[0], events[0]), None)
    assert (again.accepted, again.duplicates, again.errors) == (10, 11, [])
    drain()
    drain()
    close(container)
    usage = invoices(container)[0]["lines"][1]
    assert usage["quantity"] == "300"


def test_same_id_different_payload_is_rejected(container: Any, catalog: Any) -> None:
    container.ingest.ingest(body(ev("x", tokens=1)), None)
    res = container.ingest.ingest(body(ev("x", tokens=2), ev("y", tokens=1), ev("y", tokens=3)), None)
    assert [(e.index, e.id, e.code) for e in res.errors] == [(2, "y", "id_conflict"), (0, "x", "id_conflict")] or \
        sorted((e.index, e.code) for e in res.errors) == [(0, "id_conflict"), (2, "id_conflict")]
    assert res.accepted == 1


def test_future_and_malformed_events_get_per_event_errors(container: Any, catalog: Any, clock: Any) -> None:
    bad = [
        ev(1, ts="2026-11-05T12:06:00Z", tokens=1),           # > 5 min ahead of the clock
        {"id": "2", "customer": "acme", "type": "api.call"},  # no timestamp
        ev(3, ts="yesterday", tokens=1),
        ev(4, tokens="lots"),                                  # meter needs a number
        {"id": "5", "customer_id": "acme", "type": "api.call", "timestamp": OCT},
        ev(6, ts="2026-10-10T10:00:00", tokens=1),            # no offset
        ev(7, ts="2026-11-05T12:04:00Z", tokens=1),           # within tolerance: accepted
    ]
    res = container.ingest.ingest(body(*bad), None)
    got = {e.index: (e.field, e.code) for e in res.errors}
    assert got == {0: ("timestamp", "future_timestamp"), 1: ("timestamp", "required"),
                   2: ("timestamp", "invalid_timestamp"), 3: ("properties.tokens", "invalid_for_meter"),
                   4: ("customer_id", "unknown_field"), 5: ("timestamp", "missing_timezone")}
    assert res.accepted == 1


def test_unknown_customer_is_pending_then_counted(container: Any, catalog: Any, drain: Any) -> None:
    res = container.ingest.ingest(body(ev("p1", customer="newco", tokens=100),
                                       ev("p2", customer="newco", ts="2026-10-02T00:00:00Z", tokens=50)), None)
    assert res.pending == ["p1", "p2"] and res.accepted == 2
    assert container.events_store.get("p1")["flag"] == "pending"
    pending = container.billing_store.list_pending(10, None)[0]
    assert [(p["customer"], int(p["events"]), int(p["first_event_ms"])) for p in pending] == [
        ("newco", 2, 1790899200000)]  # 2026-10-02T00:00:00Z
    drain()
    doc = container.catalog.put_customer("newco", {"name": "New Co", "plan": "pro"})
    assert doc["started_at"] == "2026-10-02T00:00:00Z"  # starts with its first pending usage
    assert container.billing_store.list_pending(10, None)[0] == []
    container.catalog.put_customer("newco", {"name": "New Co", "plan": "pro", "started_at": OCT,
                                             "billing_anchor": OCT})
    close(container)
    assert invoices(container, "newco")[0]["lines"][1]["quantity"] == "150"


def test_late_event_is_kept_and_flagged(container: Any, catalog: Any, drain: Any) -> None:
    container.ingest.ingest(body(ev(1, tokens=5)), None)
    drain()
    close(container)
    res = container.ingest.ingest(body(ev("late", ts="2026-10-31T23:59:59Z", tokens=7)), None)
    assert res.late == ["late"] and res.accepted == 1
    drain()
    assert container.events_store.get("late")["flag"] == "late"
    assert [m["sk"] for m in container.billing_store.customer_items("late", "acme")] == ["LATE#2026-10-01T00:00:00Z"]
    assert invoices(container)[0]["lines"][1]["quantity"] == "5"  # final invoices do not change


def test_close_twice_gives_same_invoices_and_gapless_numbers(container: Any, catalog: Any, drain: Any,
                                                              clock: Any) -> None:
    container.catalog.put_customer("beta", {"name": "Beta", "plan": "pro", "started_at": "2026-09-15T00:00:00Z",
                                            "billing_anchor": OCT})
    container.ingest.ingest(body(ev(1, tokens=5), ev(2, customer="beta", ts="2026-09-20T00:00:00Z", tokens=2)), None)
    drain()
    first = close(container)
    second = close(container)
    assert second.invoices == []
    numbers = sorted(i["number"] for c in ("acme", "beta") for i in invoices(container, c))
    assert numbers == ["T-000001", "T-000002", "T-000003"]  # acme Oct, beta Sep (partial) + Oct
    assert len(first.invoices) == 3
    beta_sep = [i for i in invoices(container, "beta") if i["period"]["start"].startswith("2026-09")][0]
    assert beta_sep["lines"][0]["proration"] == "0.5333333333333333333333333333"  # 16 of 30 days
    assert beta_sep["lines"][0]["amount"] == "26.13"


def test_crash_between_ingest_steps_then_retry_counts_once(container: Any, catalog: Any, drain: Any,
                                                           ddb: Any) -> None:
    calls = {"n": 0}

    def fail_a_write(**kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 30:
            raise ConnectionError("simulated crash after some events were stored")

    ddb.meta.events.register("before-call.dynamodb.PutItem", fail_a_write)
    events = [ev(i, tokens=1) for i in range(60)]
    with pytest.raises(ConnectionError):
        container.ingest.ingest(body(*events), None)
    ddb.meta.events.unregister("before-call.dynamodb.PutItem", fail_a_write)
    retry = container.ingest.ingest(body(*events), None)  # the client retries the whole batch
    # events are written concurrently: which ones landed before the crash varies; none counts twice
    assert retry.accepted + retry.duplicates == 60 and 0 < retry.duplicates < 60 and retry.errors == []
    drain()
    close(container)
    assert invoices(container)[0]["lines"][1]["quantity"] == "60"


def test_aggregator_crash_mid_batch_applies_batch_exactly_once(container: Any, catalog: Any, ddb: Any) -> None:
    from meterbill.local.stack import StreamPoller

    for day in range(1, 11):  # 10 buckets
        container.ingest.ingest(body(*[ev(f"{day}-{i}", ts=f"2026-10-{day:02d}T01:00:00Z", tokens=i)
                                       for i in range(10)]), None)
    puts = {"n": 0}

    def crash_on_fifth_put(**kwargs: Any) -> None:
        puts["n"] += 1
        if puts["n"] == 5:
            raise ConnectionError("simulated Lambda crash after 4 bucket writes")

    attempts = []

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        attempts.append(len(event["Records"]))
        try:
            container.aggregation.apply(event["Records"])
        except ConnectionError:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    ddb.meta.events.register("before-call.dynamodb.PutItem", crash_on_fifth_put)
    StreamPoller(None, "t-events", handler).drain()
    ddb.meta.events.unregister("before-call.dynamodb.PutItem", crash_on_fifth_put)
    assert len(attempts) >= 2  # failed once, retried whole
    close(container)
    lines = invoices(container)[0]["lines"]
    assert (lines[1]["quantity"], lines[2]["quantity"]) == ("450", "100")


def test_close_crash_then_rerun_is_gapless(container: Any, catalog: Any, drain: Any, ddb: Any) -> None:
    container.catalog.put_customer("beta", {"name": "Beta", "plan": "pro", "started_at": OCT, "billing_anchor": OCT})
    seen = {"n": 0}

    def crash_second_commit(**kwargs: Any) -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            raise ConnectionError("simulated crash during the second invoice commit")

    ddb.meta.events.register("before-call.dynamodb.TransactWriteItems", crash_second_commit)
    crashed = close(container)  # the failure is the customer's: reported, the run goes on
    assert [(e["customer"], e["error"].split(":")[0]) for e in crashed.errors] == [("beta", "ConnectionError")]
    ddb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", crash_second_commit)
    close(container)
    numbers = sorted(i["number"] for c in ("acme", "beta") for i in invoices(container, c))
    assert numbers == ["T-000001", "T-000002"]


def test_meter_semantics_are_immutable(container: Any, catalog: Any) -> None:
    from meterbill.services.errors import Conflict

    with pytest.raises(Conflict):
        container.catalog.put_meter("tokens", {"event_type": "api.call", "aggregation": "max", "property": "tokens"})
    doc = container.catalog.put_meter("tokens", {"event_type": "api.call", "aggregation": "sum",
                                                 "property": "tokens", "name": "Tokens"})
    assert doc["version"] == 2


def test_billing_run_rejects_future_as_of(container: Any, catalog: Any) -> None:
    from meterbill.domain.errors import InvalidField

    with pytest.raises(InvalidField) as err:
        container.billing.run(datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert err.value.field == "as_of"


def test_aggregations_over_dimensions(container: Any, drain: Any, clock: Any) -> None:
    c = container.catalog
    for code, agg, prop in [("mx", "max", "gb"), ("mn", "min", "gb"), ("uq", "unique_count", "user"),
                            ("lt", "latest", "gb"), ("sm", "sum", "gb")]:
        c.put_meter(code, {"event_type": "storage", "aggregation": agg, "property": prop,
                           "group_by": ["region"], "filter": {"tier": ["hot"]}})
    c.put_plan("st", {"currency": "JPY", "interval": "month", "charges": [
        {"meter": m, "model": "per_unit", "unit_amount": "1"} for m in ("mx", "mn", "uq", "lt", "sm")]})
    c.put_customer("s", {"name": "S", "plan": "st", "started_at": OCT, "billing_anchor": OCT})
    rows = [("a", "2026-10-03T00:00:00Z", "1.5", "u1", "eu"), ("b", "2026-10-09T00:00:00Z", "7.25", "u2", "us"),
            ("c", "2026-10-20T00:00:00Z", "3", "u1", "eu"), ("d", "2026-10-21T00:00:00Z", "0.5", "u3", "us")]
    events = [{"id": i, "customer": "s", "type": "storage", "timestamp": ts,
               "properties": {"gb": gb, "user": u, "region": r, "tier": "hot"}} for i, ts, gb, u, r in rows]
    events.append({"id": "cold", "customer": "s", "type": "storage", "timestamp": OCT,
                   "properties": {"gb": "99", "user": "u9", "region": "eu", "tier": "cold"}})
    container.ingest.ingest(json.dumps({"events": events}), None)
    drain()
    close(container)
    q = {ln["meter"]: ln["quantity"] for ln in invoices(container, "s")[0]["lines"]}
    assert q == {"mx": "7.25", "mn": "0.5", "uq": "3", "lt": "0.5", "sm": "12.25"}
    series = container.usage.series("s", OCT, NOV, "sm", "day", group=True)
    points = series["meters"][0]["points"]
    assert {(p["start"][:10], p["group"]["region"], p["value"]) for p in points} == {
        ("2026-10-03", "eu", "1.5"), ("2026-10-09", "us", "7.25"), ("2026-10-20", "eu", "3"),
        ("2026-10-21", "us", "0.5")}
    # JPY has no minor unit; each line rounds once, half-up: 7.25->7, 0.5->1, 3, 0.5->1, 12.25->12
    assert [ln["amount"] for ln in invoices(container, "s")[0]["lines"]] == ["7", "1", "3", "1", "12"]
    assert Decimal(invoices(container, "s")[0]["total"]) == 24


def test_draft_during_grace_takes_late_events_then_finalizes_with_next_number(container: Any, catalog: Any,
                                                                               drain: Any, clock: Any) -> None:
    container.catalog.put_customer("acme", {"name": "Acme", "plan": "pro", "started_at": OCT, "billing_anchor": OCT,
                                            "payment_terms_days": 15, "invoice_grace_hours": 48})
    container.ingest.ingest(body(ev(1, tokens=100)), None)
    drain()
    first = close(container, "2026-11-01T12:00:00+00:00")
    assert first.invoices == [] and len(first.drafts) == 1
    draft = invoices(container)[0]
    assert (draft["status"], draft.get("number"), draft["lines"][1]["quantity"]) == ("draft", None, "100")
    # a late event inside the grace period is not "late": it lands on the draft
    res = container.ingest.ingest(body(ev("g", ts="2026-10-31T23:00:00Z", tokens=50)), None)
    assert res.late == []
    drain()
    assert close(container, "2026-11-02T00:00:00+00:00").drafts == first.drafts
    assert invoices(container)[0]["lines"][1]["quantity"] == "150"
    final = close(container, "2026-11-03T00:00:00+00:00")
    assert final.invoices == first.drafts
    inv = invoices(container)[0]
    assert (inv["status"], inv["number"], inv["lines"][1]["quantity"], inv["total"]) == ("final", "T-000001", "150",
                                                                                        "50.50")
    assert close(container, "2026-11-04T00:00:00+00:00").invoices == []  # final invoices never change
    assert container.billing_store.get_invoice(inv["id"])["number"] == "T-000001"


def test_trickle_traffic_keeps_buckets_small_and_redelivery_exact(container: Any, catalog: Any, ddb: Any) -> None:
    """One event per stream batch into one bucket: markers of completed batches are pruned, so the
    bucket does not grow with the number of batches; redelivering any batch changes nothing."""
    from meterbill.local.stack import StreamPoller

    batches: list[list[dict[str, Any]]] = []

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        batches.append(event["Records"])
        container.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    poller = StreamPoller(None, "t-events", handler, batch_size=1)
    for i in range(40):
        container.ingest.ingest(body(ev(f"t{i}", ts="2026-10-10T10:01:00Z", tokens=1)), None)
        poller.drain()
    item, cell = usage_cell(ddb, "acme", 1791626400, "tokens")
    assert int(cell["n"]["N"]) == 40
    assert len(item["ap"]["M"]) <= 2, item["ap"]
    for records in batches[:5] + batches[-3:]:  # Lambda re-delivers after a crash past the DONE write
        container.aggregation.apply(records)
    close(container)
    assert invoices(container)[0]["lines"][1]["quantity"] == "40"


def test_upcoming_invoice_is_the_running_bill_and_matches_the_close(container: Any, catalog: Any, drain: Any,
                                                                   clock: Any) -> None:
    container.ingest.ingest(body(ev("n1", ts="2026-11-03T10:00:00Z", tokens=1200)), None)
    drain()
    upcoming = container.billing.upcoming("acme")  # clock: 2026-11-05, November is open
    assert (upcoming["status"], upcoming["period"]["start"], upcoming["period"]["end"]) == (
        "upcoming", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    # 49 + 1000 x 0.01 + 200 x 0.005 + 1 call x 0.001 (rounds to 0.00)
    assert upcoming["total"] == "60.00"
    clock.advance(days=30)
    close(container, "2026-12-01T00:00:00+00:00")
    nov = [i for i in invoices(container) if i["period"]["start"] == "2026-11-01T00:00:00Z"][0]
    assert (nov["id"], nov["total"]) == (upcoming["id"], upcoming["total"])


def test_invoice_taxes_by_jurisdiction(container: Any, catalog: Any, drain: Any) -> None:
    container.catalog.put_tax_rate("de", {"name": "VAT 19%", "percentage": "19", "country": "DE"})
    container.catalog.put_customer("acme", {"name": "Acme", "plan": "pro", "started_at": OCT, "billing_anchor": OCT,
                                            "address": {"country": "DE", "city": "Berlin"}})
    container.catalog.put_customer("exempt", {"name": "Charity", "plan": "pro", "started_at": OCT,
                                              "billing_anchor": OCT, "tax_exempt": True,
                                              "address": {"country": "DE"}})
    container.ingest.ingest(body(*[ev(i, tokens=300) for i in range(5)]), None)
    drain()
    close(container)
    inv = invoices(container)[0]
    assert (inv["subtotal"], inv["tax_total"], inv["total"]) == ("61.51", "11.69", "73.20")
    assert inv["taxes"] == [{"name": "VAT 19%", "percentage": "19", "rate": "0.19", "taxable_amount": "61.51",
                             "amount": "11.69"}]
    charity = invoices(container, "exempt")[0]
    assert (charity["total"], charity["taxes"][0]["name"]) == ("49.00", "Tax exempt")


def test_plan_rounding_mode_rounds_lines_and_tax(container: Any, catalog: Any, drain: Any) -> None:
    container.catalog.put_tax_rate("de", {"name": "VAT 19%", "percentage": "19", "country": "DE"})
    raw = container.catalog.get_plan_doc("pro")
    container.catalog.put_plan("pro", {k: raw[k] for k in ("currency", "interval", "base_fee", "charges")}
                               | {"rounding": "down"})
    container.catalog.put_customer("acme", {"name": "Acme", "plan": "pro", "started_at": OCT, "billing_anchor": OCT,
                                            "address": {"country": "DE"}})
    container.ingest.ingest(body(*[ev(i, tokens=300) for i in range(5)]), None)
    drain()
    close(container)
    inv = invoices(container)[0]
    # 5 calls x 0.001 = 0.005 -> 0.00 (down; half-up gave 0.01); tax 61.50 x 19 % = 11.685 -> 11.68
    assert [ln["amount"] for ln in inv["lines"]] == ["49.00", "12.50", "0.00"]
    assert (inv["subtotal"], inv["tax_total"], inv["total"]) == ("61.50", "11.68", "73.18")


def test_invoice_lines_show_the_charge_unit_else_the_meter_unit(container: Any, catalog: Any, drain: Any) -> None:
    container.catalog.put_meter("tokens", {"event_type": "api.call", "aggregation": "sum", "property": "tokens",
                                           "unit": "tokens"})  # a unit is not semantics: allowed to change
    container.ingest.ingest(body(*[ev(i, tokens=2500) for i in range(5)]), None)
    drain()
    close(container)
    lines = invoices(container)[0]["lines"]
    assert [(ln.get("quantity"), ln.get("unit")) for ln in lines] == [(None, None), ("12500", "tokens"), ("5", None)]
    html = container.renderer.html(invoices(container)[0])
    assert "12,500 tokens" in html
