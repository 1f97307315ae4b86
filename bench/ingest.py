"""Ingest: parse + validate alone, and the whole ingest handler path minus the network."""

from __future__ import annotations

from typing import Any

from bench import median_seconds, report
from bench import workload as w

BATCH = 1000


def bench_validate() -> None:
    from meterbill.domain.events import loads, parse_batch
    from meterbill.domain.instants import to_ms

    body = w.body(w.events(BATCH))
    now_ms = to_ms(w.NOW)

    def once() -> Any:
        return parse_batch(loads(body)["events"], now_ms)

    good, errors = once()
    if len(good) != BATCH or errors:  # a broken workload would measure the error path
        raise RuntimeError(f"validate bench: expected {BATCH} valid events, got {len(good)} ({errors[:2]})")
    t = median_seconds(once, repeats=7, number=10, warmup=5)
    report("ingest_validate_events_per_s", BATCH / t.median, "events/s", ">= 100000",
           note=f"1 core, loads + parse_batch; {t.spread(BATCH)}")


def bench_handler() -> None:
    from bench.fakeddb import canned_container

    body = w.body(w.events(BATCH))
    who = w.customers()
    container, fake = canned_container(["llm_tokens"], who)

    def once() -> Any:
        return container.ingest.ingest(body, "application/json")

    # First batch on a cold container (catalog caches empty), then steady state.
    fake.reset()
    res = once()
    cold_calls = sum(fake.calls.values())
    if res.accepted != BATCH or res.errors or res.pending or res.late:
        raise RuntimeError(f"handler bench: unexpected result {res.as_dict()['errors'][:2]} "
                           f"accepted={res.accepted} pending={len(res.pending)} late={len(res.late)}")
    t = median_seconds(once, repeats=7, number=5, warmup=3)
    fake.reset()
    once()
    calls = dict(fake.calls)
    report("ingest_handler_events_per_s", BATCH / t.median, "events/s", ">= 20000",
           note=f"1,000-event batch, real boto3 client, network short-circuited; {t.spread(BATCH)}")
    detail = " + ".join(f"{n} {op}" for op, n in sorted(calls.items()))
    report("ingest_ddb_calls_per_batch", sum(calls.values()), "calls",
           "far below 1000", note=f"{detail}; cold container: {cold_calls}")


def run() -> None:
    bench_validate()
    bench_handler()
