"""Aggregation: one 1,000-record stream batch through AggregationService.apply, network short-circuited."""

from __future__ import annotations

from typing import Any

from bench import median_seconds, report
from bench import workload as w

BATCH = 1000
METER_CODES = ["llm_tokens", "gpu_seconds"]


def run() -> None:
    from bench.fakeddb import canned_container

    container, fake = canned_container(METER_CODES, w.customers(), capture=True)
    res = container.ingest.ingest(w.body(w.events(BATCH)), "application/json")
    if res.accepted != BATCH:
        raise RuntimeError(f"aggregation bench: {res.accepted} of {BATCH} accepted")
    items = list(fake.event_items)
    # a new batch each time (new sequence numbers): a redelivered one would be skipped as done
    batches = iter([w.stream_records(items, first_seq=(4 + i) * 10**20) for i in range(8)])
    fake.reset()
    fake.capture = False  # time the product, not the fake's request parsing

    def once() -> Any:
        return container.aggregation.apply(next(batches))

    out = once()
    if out.events != BATCH or not out.buckets_written:
        raise RuntimeError(f"aggregation bench: unexpected outcome {out}")
    calls = dict(fake.calls)
    t = median_seconds(once, repeats=5, number=1, warmup=1)
    detail = " + ".join(f"{n} {op}" for op, n in sorted(calls.items()))
    report("aggregation_events_per_s", BATCH / t.median, "events/s",
           note=f"1,000 records, 50 customers, 2 meters -> {out.buckets_written} usage-item puts; {detail}; "
                f"{t.spread(BATCH)}")
