"""Percentage charges with a per-event minimum / maximum, through the real flow: events ->
stream -> buckets that keep each event's value (keep_values) -> close -> invoice line; exactly
once under redelivery and crashes, and past the bucket item's inline budget (overflow pages)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from meterbill.adapters import dynamo_usage
from meterbill.domain.errors import InvalidField
from tests.conftest import ev, usage_cell

OCT = "2026-10-01T00:00:00Z"
D = Decimal
BUCKET = ("shop", 1791626400, "payments")  # 2026-10-10 10:00Z


@pytest.fixture
def shop(container: Any) -> Any:
    c = container.catalog
    c.put_meter("payments", {"event_type": "payment", "aggregation": "sum", "property": "amount",
                             "keep_values": True})
    c.put_plan("pay", {"currency": "USD", "interval": "month", "charges": [
        {"meter": "payments", "model": "percentage", "rate": "2.9", "fixed_amount": "0.30",
         "per_event_min": "0.50", "per_event_max": "5.00"}]})
    c.put_customer("shop", {"name": "Shop", "plan": "pay", "started_at": OCT, "billing_anchor": OCT})
    return c


def send(container: Any, amounts: list[str], ts: str = "2026-10-10T10:05:00Z", prefix: str = "p") -> None:
    events = [ev(f"{prefix}{i}", customer="shop", ts=ts, type_="payment", amount=f"#{a}#") for i, a in enumerate(amounts)]
    raw = json.dumps({"events": events}).replace('"#', "").replace('#"', "")  # JSON numbers, exact
    res = container.ingest.ingest(raw, None)
    assert res.errors == [] and res.accepted == len(amounts), res


def poller(container: Any, batch_size: int = 1000, seen: list[Any] | None = None) -> Any:
    from meterbill.local.stack import StreamPoller

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        if seen is not None:
            seen.append(event["Records"])
        try:
            container.aggregation.apply(event["Records"])
        except ConnectionError:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    return StreamPoller(None, "t-events", handler, batch_size=batch_size)


def line(container: Any) -> dict[str, Any]:
    container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00+00:00"))
    inv = container.billing_store.list_invoices("shop", 10, None)[0][0]
    return dict(inv["lines"][0])


def values(container: Any) -> Counter[Decimal]:
    out: Counter[Decimal] = Counter()
    for b in container.billing_store.query_buckets("shop", 1790000000, 1800000000):
        out.update(b.state.values)
    return out


def test_per_event_min_max_on_the_invoice(container: Any, shop: Any, drain: Any) -> None:
    send(container, ["5.00", "100.00", "0.99"])
    send(container, ["100", "500"], ts="2026-10-20T08:00:00Z", prefix="q")  # another bucket
    drain()
    got = line(container)
    # per payment 2.9 % + 0.30, each fee clamped to [0.50, 5.00]:
    #   5.00 -> 0.445 -> 0.50;  100.00 -> 3.20;  0.99 -> 0.32871 -> 0.50;  100 -> 3.20;  500 -> 14.80 -> 5.00
    # 0.50 + 3.20 + 0.50 + 3.20 + 5.00 = 12.40
    assert (got["quantity"], got["amount"]) == ("705.99", "12.40")
    assert [(p["label"], p["amount"]) for p in got["parts"]] == [
        ("2.9% of 705.99", "20.47371"), ("0.30 x 5 events", "1.50"),
        ("per-event minimum 0.50 (2 events)", "0.22629"), ("per-event maximum 5.00 (1 events)", "-9.800")]


def test_redelivered_batches_do_not_double_count_values(container: Any, shop: Any) -> None:
    seen: list[Any] = []
    p = poller(container, batch_size=2, seen=seen)
    send(container, ["5.00", "100.00", "0.99", "100", "500"])
    p.drain()
    for records in seen:  # Lambda delivers every batch again
        container.aggregation.apply(records)
    assert values(container) == {D("5"): 1, D("100"): 2, D("0.99"): 1, D("500"): 1}
    assert line(container)["amount"] == "12.40"


def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny limits so a few events take the overflow path: > 30 bytes of values inline are
    sealed into pages of <= 40 bytes; more than 3 value pages are sealed into a page of ids."""
    monkeypatch.setattr(dynamo_usage, "VALUES_INLINE", 30)
    monkeypatch.setattr(dynamo_usage, "PAGE_MAX", 40)
    monkeypatch.setattr(dynamo_usage, "REFS_MAX", 3)


def test_overflow_pages_keep_every_value(container: Any, shop: Any, ddb: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    small_pages(monkeypatch)
    amounts = [f"{i}.25" for i in range(1, 61)] + ["7.25", "7.25", "200"]  # 61 distinct values, 63 events
    send(container, amounts)
    poller(container, batch_size=7).drain()
    _, cell = usage_cell(ddb, *BUCKET)
    pages = [p["S"] for p in cell["vp"]["L"]]
    assert any(p[0] == "r" for p in pages) and len(cell.get("vs", {"S": ""})["S"]) <= 30
    assert int(cell["n"]["N"]) == 63
    # the write path reads only the inline part; reads for rating get every value
    stored = container.billing_store.get_usage_items([("shop", 1791626400, "payments", "")])
    assert sum(stored[("shop", 1791626400, "payments", "")].cells[1791626400].values.values()) < 63
    assert values(container) == Counter(D(a) for a in amounts)
    # fee = 2.9 % x v + 0.30, clamped to [0.50, 5.00]:
    #   1.25 .. 6.25 (6 events): below 0.50 (6.25 -> 0.48125)           -> 6 x 0.50 = 3.00
    #   7.25 .. 60.25 (54 events) and 7.25 twice: unclamped, values sum
    #     (1830 - 21) + 54 x 0.25 + 2 x 7.25 = 1837.00 -> 0.029 x 1837 + 56 x 0.30 = 70.073
    #   200: 6.10                                                          -> 5.00
    # 3.00 + 70.073 + 5.00 = 78.073 -> 78.07
    assert line(container)["amount"] == "78.07"


def test_crash_after_sealing_a_page_counts_nothing_twice(container: Any, shop: Any, ddb: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A page written by an attempt whose bucket write never happened is not referenced: the
    retried batch seals its own pages and every value counts once."""
    small_pages(monkeypatch)
    amounts = [f"{i}.5" for i in range(1, 31)]
    send(container, amounts)
    state = {"pages": 0, "failed": False}

    def crash_on_bucket_write_after_a_page(params: dict[str, Any], **_: Any) -> None:
        pk = params["Item"]["pk"]["S"]
        if pk.startswith("UV#"):
            state["pages"] += 1
        elif pk.startswith("U#") and state["pages"] >= 2 and not state["failed"]:
            state["failed"] = True
            raise ConnectionError("simulated crash between sealing pages and the bucket write")

    ddb.meta.events.register("provide-client-params.dynamodb.PutItem", crash_on_bucket_write_after_a_page)
    poller(container, batch_size=10).drain()
    ddb.meta.events.unregister("provide-client-params.dynamodb.PutItem", crash_on_bucket_write_after_a_page)
    assert state["failed"]
    assert values(container) == Counter(D(a) for a in amounts)
    assert int(usage_cell(ddb, *BUCKET)[1]["n"]["N"]) == 30


@pytest.mark.parametrize("key", ["per_event_min", "per_event_max"])
def test_per_event_limits_need_a_meter_that_keeps_values(container: Any, key: str) -> None:
    container.catalog.put_meter("sums", {"event_type": "payment", "aggregation": "sum", "property": "amount"})
    with pytest.raises(InvalidField) as err:
        container.catalog.put_plan("p", {"currency": "USD", "charges": [
            {"meter": "sums", "model": "percentage", "rate": "1", key: "0.50"}]})
    assert err.value.field == f"charges[0].{key}"
    assert "meter 'sums' must be a sum meter with keep_values: true" in err.value.problem


def test_a_page_sealed_twice_with_the_same_content_counts_twice(container: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Page ids are content hashes: two seals of equal multisets share one item, and each
    reference counts."""
    from meterbill.domain.meters import BucketState
    from meterbill.ports import UsageItem

    small_pages(monkeypatch)
    store, key, at = container.billing_store, ("shop", 1791626400, "payments", ""), 1791626400
    same = {D(f"{i}.5"): 1 for i in range(1, 11)}  # 10 values, 39 bytes encoded: sealed on every put
    assert store.put_usage_item(UsageItem(key, {at: BucketState(10, D(55), values=dict(same))}, {}, 1), None)
    first = store.get_usage_items([key])[key]
    assert first.cells[at].values == {} and len(first.pages[at]) == 1
    assert store.put_usage_item(UsageItem(key, {at: BucketState(20, D(110), values=dict(same))}, {}, 2,
                                          first.pages), 1)
    second = store.get_usage_items([key])[key]
    assert second.pages[at] == first.pages[at] * 2
    [read] = store.query_buckets("shop", 1791626400, 1791627300)
    assert read.state.values == {v: 2 for v in same} and read.pages == ()
