"""`meterbill usage rebuild`: usage re-derived from the raw events, racing the live aggregator
without losing or double counting an event; invoiced periods get the late-usage treatment."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import ev, standard_catalog

NOV = datetime.fromisoformat("2026-11-01T00:00:00Z")
DEC = datetime.fromisoformat("2026-12-01T00:00:00Z")


@pytest.fixture
def rebuild(container: Any, clock: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The rebuild service on the test clock: its wait for the mark advances the clock."""
    monkeypatch.setattr(container.rebuild, "_sleep", lambda s: clock.advance(seconds=s))
    return container.rebuild


def send(container: Any, *events: dict[str, Any]) -> None:
    res = container.ingest.ingest(json.dumps({"events": list(events)}), None)
    assert res.accepted == len(events), res


def usage(container: Any, customer: str, meter: str) -> tuple[int, Decimal]:
    buckets = [b for b in container.billing_store.query_buckets(customer, 0, 2_000_000_000) if b.meter == meter]
    return sum(b.state.count for b in buckets), sum((b.state.sum for b in buckets), Decimal(0))


def invoice(container: Any, customer: str, start: str) -> dict[str, Any]:
    invoices = container.billing_store.list_invoices(customer, 20, None)[0]
    return next(i for i in invoices if i["period"]["start"] == start)


def test_a_meter_created_after_its_events_gets_their_usage_and_the_invoice_bills_it(
        container: Any, rebuild: Any, drain: Any) -> None:
    standard_catalog(container)
    send(container, *[ev(f"g{i}", customer="beta", type_="gpu.run", ts=f"2026-10-{10 + i}T08:00:00Z", seconds=10 * i)
                      for i in range(1, 4)])
    drain()
    container.catalog.put_meter("gpu", {"event_type": "gpu.run", "aggregation": "sum", "property": "seconds"})
    container.catalog.put_plan("gpu", {"currency": "USD", "interval": "month", "charges": [
        {"meter": "gpu", "model": "per_unit", "unit_amount": "0.10"}]})
    container.catalog.put_customer("beta", {"name": "Beta", "plan": "gpu", "started_at": "2026-10-01T00:00:00Z",
                                            "billing_anchor": "2026-10-01T00:00:00Z"})
    assert usage(container, "beta", "gpu") == (0, 0)
    report = rebuild.run(rebuild.start("gpu"), segments=2)
    assert (report.events_counted, report.items_written) == (3, 3)
    assert report.read_units > 0 and not report.rebuild.running
    assert usage(container, "beta", "gpu") == (3, 60)
    container.billing.run(NOV)
    line = next(ln for ln in invoice(container, "beta", "2026-10-01T00:00:00Z")["lines"] if ln.get("meter") == "gpu")
    assert (line["quantity"], line["amount"]) == ("60", "6.00")
    # re-running changes nothing (and writes nothing)
    again = rebuild.run(rebuild.start("gpu"))
    assert (again.items_written, again.items_unchanged) == (0, 3)
    assert usage(container, "beta", "gpu") == (3, 60)


def test_a_rebuild_racing_ingest_and_aggregation_counts_every_event_once(
        container: Any, rebuild: Any, drain: Any, clock: Any, ddb: Any) -> None:
    standard_catalog(container)
    send(container, ev("a1", tokens=1), ev("a2", ts="2026-10-11T10:00:00Z", tokens=2))   # aggregated before
    drain()
    run = rebuild.start("tokens")
    assert run.mark_ms == int(clock().timestamp() * 1000) + 120_000
    send(container, ev("b1", tokens=10), ev("b2", ts="2026-10-12T10:00:00Z", tokens=20))  # before the mark
    before_mark = drain()
    clock.advance(seconds=121)
    send(container, ev("c1", tokens=100),                               # after the mark: pending until rebuilt
         ev("c2", ts="2026-10-13T10:00:00Z", tokens=200))               # an item with no event before the mark
    drain()
    assert usage(container, "acme", "tokens") == (4, 303)              # b's are the rebuild's; pending is read
    raw = ddb.get_item(TableName="t-billing", Key={"pk": {"S": "U#acme"},
                                                   "sk": {"S": f"{1791885600:012d}|tokens#"}})["Item"]  # 10-13 10:00
    assert "pc" in raw and "c" in raw and not raw["c"]["M"]
    # a billing run while the rebuild runs finalizes nothing: usage is not complete
    lag = container.watermark.wait(0)
    assert lag is not None and lag.reason == "usage_rebuild"
    report = rebuild.run(run)
    assert (report.events_counted, report.items_written, report.items_unchanged) == (4, 3, 1)  # 10-11: as it was
    send(container, ev("d1", tokens=1000), ev("d2", ts="2026-10-12T10:05:00Z", tokens=2000))   # after: applied
    drain()
    assert usage(container, "acme", "tokens") == (8, 3333)
    raw = ddb.get_item(TableName="t-billing", Key={"pk": {"S": "U#acme"},
                                                   "sk": {"S": f"{1791885600:012d}|tokens#"}})["Item"]
    assert "pc" not in raw and raw["rb"]["S"] == run.id
    # a (re)delivery of events accepted before the mark, even past the checkpoint: the rebuild has them
    from meterbill.local.stack import StreamPoller

    redelivered: list[Any] = []
    StreamPoller(None, "t-events", lambda e, _c: redelivered.extend(e["Records"]) or {"batchItemFailures": []},
                 ).drain()
    container.aggregation.apply(redelivered[2:4], redrive=True)
    assert before_mark == 2 and usage(container, "acme", "tokens") == (8, 3333)
    assert container.watermark.wait(0) is None


def test_an_invoiced_period_gets_a_late_marker_and_the_next_run_adjusts(container: Any, rebuild: Any, drain: Any,
                                                                        clock: Any) -> None:
    """A stream outage longer than its 24 h: the records are gone, the raw events are not."""
    from meterbill.local.stack import StreamPoller

    standard_catalog(container)
    send(container, ev(1, tokens=500))
    drain()
    container.billing.run(NOV)
    october = invoice(container, "acme", "2026-10-01T00:00:00Z")
    assert october["status"] == "final" and october["subtotal"] == "54.00"
    send(container, ev("lost", ts="2026-10-20T10:00:00Z", tokens=700))

    def expired(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:   # never applied; the watermark moves on
        recs = event["Records"]
        container.watermark.applied(recs[0]["dynamodb"]["SequenceNumber"], recs[-1]["dynamodb"]["SequenceNumber"],
                                    None)
        return {"batchItemFailures": []}

    StreamPoller(None, "t-events", expired).drain()
    assert usage(container, "acme", "tokens") == (1, 500)
    report = rebuild.run(rebuild.start("tokens", "acme", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"))
    assert report.buckets_changed == 1
    assert [m["sk"] for m in container.billing_store.customer_items("late", "acme")] == [
        "LATE#2026-10-01T00:00:00Z"]
    clock.advance(days=30)
    container.billing.run(DEC)
    november = invoice(container, "acme", "2026-11-01T00:00:00Z")
    [adjustment] = [ln for ln in november["lines"] if ln["type"] == "adjustment"]
    assert adjustment["amount"] == "6.00" and adjustment["refers_to"]["invoice"] == october["id"]
    assert container.billing_store.get_invoice(october["id"])["lines"] == october["lines"]   # final stays final


def test_scope_and_field_errors(container: Any, rebuild: Any) -> None:
    from meterbill.domain.errors import InvalidField
    from meterbill.services.errors import Conflict, NotFound

    standard_catalog(container)
    with pytest.raises(NotFound) as missing:
        rebuild.start("nope")
    assert missing.value.field == "meter"
    with pytest.raises(InvalidField) as grid:
        rebuild.start("tokens", start="2026-10-01T00:07:00Z")
    assert grid.value.field == "from"
    first = rebuild.start("tokens", "acme")
    assert rebuild.start("tokens", "acme").id == first.id          # a crashed run resumes
    with pytest.raises(Conflict) as overlapping:
        rebuild.start("tokens")
    assert overlapping.value.field == "meter"


def test_cli_rebuilds_and_prints_the_report(container: Any, clock: Any, drain: Any, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import meterbill.bootstrap
    from meterbill import cli

    standard_catalog(container)
    send(container, ev("x1", tokens=5), ev("x2", tokens=6))
    clock.advance(seconds=1)   # accepted before the mark (now, with --margin-s 0)
    real = meterbill.bootstrap.bootstrap
    monkeypatch.setenv("METERBILL_EVENTS_TABLE", "t-events")
    monkeypatch.setenv("METERBILL_BILLING_TABLE", "t-billing")
    monkeypatch.setattr(meterbill.bootstrap, "bootstrap", lambda: real(clock=clock))
    assert cli.main(["usage", "rebuild", "--meter", "tokens", "--aws", "--margin-s", "0", "--segments", "2"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["events_counted"] == 2 and report["items_written"] == 1 and report["rebuild"]["running"] is False
    assert "raw events scanned" in err
    drain()   # the aggregator later sees the same events, accepted before the mark: skipped
    assert usage(container, "acme", "tokens") == (2, 11)
    assert cli.main(["usage", "rebuild", "--meter", "nope", "--aws", "--margin-s", "0"]) == 1
    assert "meter 'nope' does not exist" in capsys.readouterr().err


def test_a_batch_that_missed_the_rebuild_record_is_retried_instead_of_counting_twice(
        container: Any, rebuild: Any, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An aggregator batch that read the rebuild records just before a rebuild was created, and
    writes after the rebuild rewrote the item: its event is the rebuild's, so it must not add it."""
    from meterbill.local.stack import StreamPoller

    standard_catalog(container)
    send(container, ev("s1", tokens=7))                      # accepted before the rebuild, not aggregated yet
    clock.advance(seconds=1)
    assert rebuild.run(rebuild.start("tokens", margin_s=0)).events_counted == 1
    records: list[Any] = []
    StreamPoller(None, "t-events", lambda e, _c: records.extend(e["Records"]) or {"batchItemFailures": []}).drain()
    real = container.billing_store.rebuilds
    monkeypatch.setattr(container.billing_store, "rebuilds", lambda: [])   # read before the record existed
    with pytest.raises(RuntimeError, match="unknown to this batch"):
        container.aggregation.apply(records)
    monkeypatch.setattr(container.billing_store, "rebuilds", real)
    out = container.aggregation.apply(records)                # Lambda's retry reads the record: skipped
    assert out.skipped_rebuild == 1
    assert usage(container, "acme", "tokens") == (1, 7)
