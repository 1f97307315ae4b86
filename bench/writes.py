"""DynamoDB write capacity per event: raw event items + usage-bucket writes, by DynamoDB's size rule."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from bench import report
from bench import workload as w
from bench.wcu import item_size, write_units

BATCH = 1000
METER_CODES = ["llm_tokens", "gpu_seconds"]


def aggregation_marks(fake: Any, bench: str) -> list[dict[str, Any]]:
    """The aggregator's own bookkeeping writes, as items: the shard's checkpoint (the usage
    watermark, which also tells a redelivered batch it is done) per stream batch. Anything else
    is a surprise."""
    marks = [{**p["Key"], **{k[1:]: v for k, v in p["ExpressionAttributeValues"].items()}}
             for op, p in fake.other_writes if op == "UpdateItem" and p["Key"]["pk"]["S"] == "STREAMPOS"]
    if len(marks) != len(fake.other_writes):
        raise RuntimeError(f"{bench}: unexpected writes {fake.other_writes[:1]}")
    return marks


def bench_batch() -> None:
    """1,000 events, 50 customers, 2 meters, one hour: one ingest request, then the one stream
    batch (Lambda BatchSize 1000) that carries those events into empty buckets."""
    from bench.fakeddb import canned_container

    container, fake = canned_container(METER_CODES, w.customers(), capture=True)
    res = container.ingest.ingest(w.body(w.events(BATCH)), "application/json")
    if res.accepted != BATCH:
        raise RuntimeError(f"write-units bench: {res.accepted} of {BATCH} accepted")
    event_items = list(fake.event_items)
    fake.reset()
    out = container.aggregation.apply(w.stream_records(event_items))
    bucket_items = list(fake.bucket_items)
    done = aggregation_marks(fake, "write-units bench")
    ev_wcu = sum(write_units(i) for i in event_items)
    bk_wcu = sum(write_units(i) for i in bucket_items)
    done_wcu = sum(write_units(i) for i in done)
    per_event = (ev_wcu + bk_wcu + done_wcu) / BATCH
    report("ddb_write_units_per_event", round(per_event, 3), "WCU", "<= 1.2",
           note=f"events {ev_wcu} WCU + {len(bucket_items)} usage-item puts {bk_wcu} WCU + "
                f"{len(done)} shard checkpoint {done_wcu} WCU, per {BATCH} events")
    report("ddb_write_units_per_event_ingest_only", round(ev_wcu / BATCH, 3), "WCU", "<= 1.2",
           note="the ingest request's own writes (raw events), before aggregation")
    report("ddb_event_item_bytes_avg", round(statistics.mean(item_size(i) for i in event_items)), "bytes")
    report("ddb_bucket_item_bytes_avg", round(statistics.mean(item_size(i) for i in bucket_items)), "bytes",
           note=f"{out.buckets_written} usage items written")
    # `meterbill usage rebuild`: a strongly consistent Scan bills 1 RCU per 4 KB read, of every item of the
    # events table (a filter does not lower it); then at most one write per usage item in scope.
    scan_bytes = sum(item_size(i) for i in event_items) / BATCH * 1_000_000
    report("usage_rebuild_rcu_per_million_events", round(scan_bytes / 4096), "RCU",
           note=f"{round(scan_bytes / 1e6)} MB of {statistics.mean(item_size(i) for i in event_items):.0f}-byte "
                f"raw events, strongly consistent (eventually consistent would halve it, not used: see decisions)")
    report("usage_rebuild_wcu_per_million_events", round(bk_wcu / BATCH * 1_000_000), "WCU",
           note="at most: every usage item of this workload rewritten (an unchanged item is not written)")


def template_batching_window() -> int:
    from infra.template import load_template

    fn = load_template()["Resources"]["AggregatorFunction"]["Properties"]
    return int(fn["Events"]["EventsStream"]["Properties"]["MaximumBatchingWindowInSeconds"])


def bench_trickle(customers: int = 1, seconds: int = 900) -> None:
    """Steady low-rate traffic: each customer sends 1 event per second; Lambda delivers one
    stream batch per batching window (read from template.yaml). Simulates one whole 15-minute
    bucket lifetime; the canned DynamoDB keeps the buckets put, so every batch re-reads and
    rewrites each bucket it touches, as on AWS."""
    from bench.fakeddb import canned_container

    who = w.customers(customers)
    start = w.HOUR_START
    evts = []
    for s in range(seconds):
        for j, c in enumerate(who):
            e = w.events(1, seed=s * 1000 + j, start=start + timedelta(seconds=s), span_s=0.999)[0]
            e["customer"] = c
            evts.append(e)
    now = [w.NOW]
    container, fake = canned_container(METER_CODES, who, capture=True, keep_buckets=True,
                                       clock=lambda: now[0])
    for i in range(0, len(evts), BATCH):
        container.ingest.ingest(w.body(evts[i:i + BATCH]), "application/json")
    items = sorted(fake.event_items, key=lambda i: int(i["ts"]["N"]))  # concurrent puts: restore time order
    if len(items) != len(evts):
        raise RuntimeError("trickle bench: not every event was stored")
    fake.reset()
    records = w.stream_records(items)
    window = template_batching_window()  # Lambda waits this long to fill a batch
    for s in range(0, seconds, window):
        now[0] = start + timedelta(seconds=s + window)
        batch = records[s * customers:(s + window) * customers]
        for r in batch:  # created moments before the batch, on the clock the checkpoint's applied_at uses
            r["dynamodb"]["ApproximateCreationDateTime"] = time.time()
        container.aggregation.apply(batch)
    done = aggregation_marks(fake, "trickle bench")
    ev_wcu = sum(write_units(i) for i in items)
    bk_wcu = sum(write_units(i) for i in fake.bucket_items) + sum(write_units(i) for i in done)
    per_event = (ev_wcu + bk_wcu) / len(items)
    sizes = [item_size(i) for i in fake.bucket_items]
    report("ddb_write_units_per_event_trickle", round(per_event, 3), "WCU", "<= 1.2",
           note=f"{customers} customer(s) x 1 event/s, {window}-s stream batches (template), {seconds} s = one bucket lifetime; "
                f"{len(sizes)} usage-item puts, {sizes[0]} -> {max(sizes)} bytes, + {len(done)} shard checkpoints")


def run() -> None:
    bench_batch()
    bench_trickle()
