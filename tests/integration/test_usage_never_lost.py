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

from tests.conftest import ev, standard_catalog

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


# -- late usage in a later period ----------------------------------------------------------
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
