"""Issue 7 §1: a billing run includes all usage accepted before it started.

On the in-process stack (moto's real stream, the real aggregator and close): a run that starts
while events are still in the stream finalizes nothing (drafts with ``waiting_for_usage``); a run
that can wait for the aggregator finalizes exact invoices; and an event aggregated between the
close's read of the buckets and its commit is never lost (the fence marks it late)."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

import pytest

from meterbill.adapters.dynamo_stream import StreamWatermark, padded
from tests.conftest import ev, standard_catalog

NOV = "2026-11-01T00:00:00Z"


def body(*events: dict[str, Any]) -> str:
    return json.dumps({"events": list(events)})


def invoices(container: Any, customer: str) -> list[dict[str, Any]]:
    return container.billing_store.list_invoices(customer, 100, None)[0]


def customers(container: Any, n: int) -> list[str]:
    ids = [f"c{i:02d}" for i in range(n)]
    for cid in ids:
        container.catalog.put_customer(cid, {"name": cid, "email": f"{cid}@x.example", "plan": "pro",
                                             "started_at": "2026-10-01T00:00:00Z",
                                             "billing_anchor": "2026-10-01T00:00:00Z"})
    return ids


def send(container: Any, ids: list[str], per_customer: int) -> None:
    events = [ev(f"{cid}-{i}", customer=cid, tokens=1 + i % 7, ts=f"2026-10-{1 + i % 30:02d}T10:{i % 60:02d}:00Z")
              for cid in ids for i in range(per_customer)]
    for i in range(0, len(events), 1000):
        res = container.ingest.ingest(body(*events[i:i + 1000]), None)
        assert res.accepted == len(events[i:i + 1000]) and not res.errors


def expected_tokens(per_customer: int) -> int:
    return sum(1 + i % 7 for i in range(per_customer))


def test_a_run_right_after_ingest_finalizes_nothing_until_usage_is_applied(container: Any, drain: Any) -> None:
    standard_catalog(container)
    ids = customers(container, 5)
    send(container, ids, 200)
    summary = container.billing.run(datetime.fromisoformat(NOV))   # nothing aggregated yet
    assert summary.invoices == []
    assert summary.usage_lag is not None and summary.usage_lag.reason == "unapplied_records"
    assert sorted(summary.waiting) == sorted(i["id"] for c in [*ids, "acme"] for i in invoices(container, c))
    for cid in ids:
        [draft] = invoices(container, cid)
        assert draft["status"] == "draft" and draft["waiting_for_usage"]["reason"] == "unapplied_records"
    assert container.watermark.lag() is not None
    drain()
    summary = container.billing.run(datetime.fromisoformat(NOV))
    assert summary.usage_lag is None and summary.waiting == [] and len(summary.invoices) == 6  # and acme
    for cid in ids:
        [inv] = invoices(container, cid)
        assert inv["status"] == "final" and "waiting_for_usage" not in inv
        tokens = next(ln for ln in inv["lines"] if ln.get("meter") == "tokens")
        assert tokens["quantity"] == str(expected_tokens(200))
    assert not any(container.billing_store.customer_items("late", cid) for cid in ids)  # nothing late


def test_a_run_waits_for_a_concurrent_aggregator_and_bills_everything(ddb: Any, clock: Any) -> None:
    """The issue's scenario in-process: 20 customers, events stored, run at once, while the
    stream is applied concurrently (as Lambda's mapping does): every invoice final and exact."""
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.local.stack import StreamPoller

    container = bootstrap(Settings(events_table="t-events", billing_table="t-billing", usage_wait_s=60,
                                   stream_settle_s=0), client=ddb, clock=clock, cache_ttl_s=0)
    standard_catalog(container)
    ids = customers(container, 20)
    send(container, ids, 100)

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        container.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    poller = StreamPoller(None, "t-events", handler, batch_size=100)
    stop = threading.Event()

    def aggregate() -> None:
        stop.wait(0.3)  # the run starts first and must wait
        while not stop.is_set():
            poller.drain()
            stop.wait(0.05)

    thread = threading.Thread(target=aggregate)
    thread.start()
    try:
        summary = container.billing.run(datetime.fromisoformat(NOV))
    finally:
        stop.set()
        thread.join()
    assert summary.usage_lag is None and len(summary.invoices) == 21, summary.as_dict()  # and acme
    for cid in ids:
        [inv] = invoices(container, cid)
        tokens = next(ln for ln in inv["lines"] if ln.get("meter") == "tokens")
        assert inv["status"] == "final" and tokens["quantity"] == str(expected_tokens(100))


def test_usage_aggregated_between_the_close_read_and_its_commit_is_marked_late(
        container: Any, drain: Any, monkeypatch: pytest.MonkeyPatch, clock: Any) -> None:
    """The race the other way: the aggregator applies an event after the close read the
    buckets but before the commit. Without the fence it was neither on the invoice nor late."""
    standard_catalog(container)
    assert container.ingest.ingest(body(ev(1, tokens=100)), None).accepted == 1
    drain()
    store = container.billing_store
    real_query = store.query_buckets
    injected = []

    def read_then_aggregate(customer_id: str, start_s: int, end_s: int) -> Any:
        found = real_query(customer_id, start_s, end_s)
        if not injected:    # once: during the close of October, after its read
            injected.append(1)
            res = container.ingest.ingest(body(ev(2, tokens=50)), None)   # October usage
            assert res.accepted == 1
            drain()
        return found

    monkeypatch.setattr(store, "query_buckets", read_then_aggregate)
    summary = container.billing.run(datetime.fromisoformat(NOV))
    monkeypatch.setattr(store, "query_buckets", real_query)
    [october] = invoices(container, "acme")
    assert summary.invoices == [october["id"]]
    assert next(ln for ln in october["lines"] if ln.get("meter") == "tokens")["quantity"] == "100"
    # the 50 tokens are not lost: October is marked for re-rating ...
    assert [m["sk"] for m in store.customer_items("late", "acme")] == ["LATE#2026-10-01T00:00:00Z"]
    # ... and November's invoice carries them as an adjustment naming October's invoice
    clock.advance(days=30)
    container.billing.run(datetime.fromisoformat("2026-12-01T00:00:00Z"))
    november = next(i for i in invoices(container, "acme") if i["period"]["start"].startswith("2026-11"))
    [adj] = [ln for ln in november["lines"] if ln["type"] == "adjustment"]
    assert adj["refers_to"]["invoice"] == october["id"] and adj["amount"] == "0.50"   # 50 x 0.01


def test_checkpoints_advance_monotonically_per_shard(container: Any, drain: Any) -> None:
    standard_catalog(container)
    wm: StreamWatermark = container.watermark
    assert wm.checkpoints() == {}
    container.ingest.ingest(body(*[ev(i, tokens=1) for i in range(3)]), None)
    drain()
    [(shard, first)] = wm.checkpoints().items()
    assert wm.shard_of(first["seq"]) == shard and first["created"] is not None
    container.ingest.ingest(body(ev(10, tokens=1)), None)
    drain()
    later = wm.checkpoints()[shard]
    assert int(later["seq"]) > int(first["seq"])
    wm.applied(first["seq"], first["seq"], first["created"])     # a redelivered older batch
    assert wm.checkpoints()[shard]["seq"] == later["seq"]
    assert padded("12") == "0" * 38 + "12"


def test_records_created_after_the_cutoff_do_not_hold_a_run(container: Any, drain: Any) -> None:
    standard_catalog(container)
    container.ingest.ingest(body(ev(1, tokens=1)), None)
    wm: StreamWatermark = container.watermark
    now = wm._wall()
    assert wm.check(now + 5) is not None          # created before the cutoff, not applied: behind
    assert wm.check(now - 5) is None              # only records newer than the cutoff: not behind
    drain()
    assert wm.check(now + 5) is None


def test_ingest_says_late_for_a_period_being_closed_and_right_after_its_close(
        container: Any, drain: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest reads the customer uncached: an event for a period a run is closing (its fence is up)
    or has just closed is reported late at once, not up to 10 s later."""
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    standard_catalog(container)
    cached = bootstrap(container.settings, client=container.billing_store._c, clock=container.clock,
                       cache_ttl_s=3600)    # the production cache, warm with the customer before the close
    assert cached.ingest.ingest(body(ev("warm", tokens=1, ts="2026-11-02T10:00:00Z")), None).late == []
    container.billing_store.fence_close("acme", "2026-11-01T00:00:00Z")          # a run is closing October
    assert cached.ingest.ingest(body(ev("during", tokens=1)), None).late == ["during"]
    drain()
    container.billing.run(datetime.fromisoformat(NOV))
    assert cached.ingest.ingest(body(ev("after", tokens=1)), None).late == ["after"]


def test_dimension_values_too_long_to_group_by_are_rejected_at_ingest(container: Any) -> None:
    standard_catalog(container)
    container.catalog.put_meter("by_region", {"event_type": "api.call", "aggregation": "count",
                                              "group_by": ["region", "zone"]})
    res = container.ingest.ingest(body(ev("g1", tokens=1, region="r" * 600, zone="z" * 400),
                                       ev("g2", tokens=1, region="eu", zone="a")), None)
    assert res.accepted == 1
    [err] = res.errors
    assert (err.id, err.field, err.code) == ("g1", "properties.region", "invalid_for_meter")
    assert "at most 900" in err.message
