"""Issue 7 §6: faults on the real code paths, as figures.

A botocore ``before-send`` hook on the DynamoDB client fails a seeded share of the calls during
ingest, aggregation and close, in two ways: **before** the call reaches the store (throttling,
nothing applied) and **after** it (the store applied the write, the response is lost as a 500).
botocore's own retries are off, so every fault reaches our code. The client behaves as real ones
do: it resends what was not acknowledged (same ids), Lambda's stream mapping retries a failed
batch, the scheduler runs the close again. Then: every event billed exactly once, each invoice
exact, numbers gapless. Each test prints how many faults it injected."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from tests.conftest import FakeClock

CUSTOMERS = 6
EVENTS_PER_CUSTOMER = 250


class RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class Faults:
    """Fails a seeded share of DynamoDB sends: before (throttled) or after (applied, then 500)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.on = False
        self.sends = 0
        self.injected: Counter[str] = Counter()

    def __call__(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        if not self.on:
            return None
        self.sends += 1
        if self.rng.random() >= self.rate:
            return None
        op = request.headers.get("X-Amz-Target", b"")
        op = (op.decode() if isinstance(op, bytes) else op).rsplit(".", 1)[-1]
        if self.rng.random() < 0.5:
            self.injected[f"throttled:{op}"] += 1
            return self._error(request, 400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
        from moto.core.models import botocore_stubber   # the write happens, the answer is lost
        botocore_stubber(request=request, **kwargs)
        self.injected[f"lost_response:{op}"] += 1
        return self._error(request, 500, "InternalServerError", "Internal server error")

    @staticmethod
    def _error(request: Any, status: int, code: str, message: str) -> AWSResponse:
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "injected-fault",
                                                 "Content-Type": "application/x-amz-json-1.0"}, RawBody(body))

    def total(self) -> int:
        return sum(self.injected.values())


def graduated(tokens: int) -> Decimal:
    first = min(tokens, 1000)
    return Decimal(first) * Decimal("0.01") + Decimal(max(tokens - 1000, 0)) * Decimal("0.005")


def cents(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"), ROUND_HALF_UP)


@pytest.fixture
def faulty(aws: None, clock: FakeClock) -> Any:
    import boto3

    from infra.template import create_tables
    from meterbill.adapters.dynamo_codec import install_pass_through
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    client = boto3.client("dynamodb", region_name="us-east-1",
                          config=Config(retries={"total_max_attempts": 1}))   # every fault reaches our code
    client = install_pass_through(client)
    create_tables(client, {"EventsTable": "t-events", "BillingTable": "t-billing"})
    faults = Faults(rate=0.08, seed=7)
    client.meta.events.register_first("before-send.dynamodb", faults)
    container = bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                                   usage_wait_s=0, stream_settle_s=0), client=client, clock=clock, cache_ttl_s=0)
    return container, faults


def send_until_acknowledged(container: Any, events: list[dict[str, Any]]) -> tuple[int, int, int]:
    """A well-behaved client: resend every event not acknowledged (accepted or duplicate)."""
    accepted = duplicates = failures = 0
    todo = list(events)
    for _ in range(200):
        if not todo:
            return accepted, duplicates, failures
        try:
            res = container.ingest.ingest(json.dumps({"events": todo}), None)
        except Exception:
            failures += 1                       # the request failed as a whole (a 5xx): resend it all
            continue
        retry = {e.id for e in res.errors if e.code == "storage_unavailable"}
        assert not [e for e in res.errors if e.code != "storage_unavailable"], res.errors
        accepted += res.accepted
        duplicates += res.duplicates
        todo = [e for e in todo if e["id"] in retry]
    raise AssertionError("events never acknowledged")


def drain_like_lambda(container: Any) -> int:
    """Lambda's stream mapping: a failed batch is retried from its first record until it applies."""
    from meterbill.local.stack import StreamPoller

    failed = 0

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        nonlocal failed
        try:
            container.aggregation.apply(event["Records"])
        except Exception:
            failed += 1
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    poller = StreamPoller(None, "t-events", handler, batch_size=200)
    poller_sleep = __import__("meterbill.local.stack", fromlist=["time"]).time
    original = poller_sleep.sleep
    poller_sleep.sleep = lambda _s: None      # the poller's retry pause, not needed here
    try:
        poller.drain()
    finally:
        poller_sleep.sleep = original
    return failed


def close_until_done(container: Any, as_of: datetime) -> tuple[int, list[str]]:
    """The scheduler: run the close again until a run completes without an error."""
    runs, errors = 0, []
    for _ in range(100):
        runs += 1
        try:
            summary = container.billing.run(as_of)
        except Exception as exc:   # the run itself failed: the scheduler retries it
            errors.append(type(exc).__name__)
            continue
        if not summary.errors and not summary.waiting:
            return runs, errors
        errors += [e["error"][:40] for e in summary.errors]
    raise AssertionError(f"the close never completed: {errors[-5:]}")


def test_faults_during_ingest_aggregation_and_close_lose_nothing_and_count_nothing_twice(
        faulty: Any, capsys: pytest.CaptureFixture[str]) -> None:
    container, faults = faulty
    from tests.conftest import standard_catalog

    standard_catalog(container)
    ids = [f"f{i}" for i in range(CUSTOMERS)]
    for cid in ids:
        container.catalog.put_customer(cid, {"name": cid, "email": f"{cid}@x.example", "plan": "pro",
                                             "started_at": "2026-10-01T00:00:00Z",
                                             "billing_anchor": "2026-10-01T00:00:00Z"})
    rng = random.Random(1)
    events = [{"id": f"{cid}-{i}", "customer": cid, "type": "api.call",
               "timestamp": f"2026-10-{1 + i % 30:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
               "properties": {"tokens": rng.randint(1, 20)}} for cid in ids for i in range(EVENTS_PER_CUSTOMER)]
    tokens = Counter()
    for e in events:
        tokens[e["customer"]] += e["properties"]["tokens"]

    faults.on = True
    phase: dict[str, int] = {}
    acknowledged = 0
    for i in range(0, len(events), 100):
        accepted, duplicates, _ = send_until_acknowledged(container, events[i:i + 100])
        acknowledged += accepted + duplicates
    phase["ingest"] = faults.total()
    failed_batches = drain_like_lambda(container)
    phase["aggregation"] = faults.total() - phase["ingest"]
    runs, run_errors = close_until_done(container, datetime.fromisoformat("2026-11-01T00:00:00Z"))
    phase["close"] = faults.total() - phase["ingest"] - phase["aggregation"]
    faults.on = False

    assert acknowledged >= len(events)         # each event acknowledged (a lost answer: later as duplicate)
    store = container.billing_store
    numbers = []
    for cid in ids:
        [inv] = store.list_invoices(cid, 10, None)[0]
        assert inv["status"] == "final"
        lines = {ln.get("meter") or ln["type"]: ln for ln in inv["lines"]}
        assert lines["tokens"]["quantity"] == str(tokens[cid]), cid
        assert lines["calls"]["quantity"] == str(EVENTS_PER_CUSTOMER), cid
        expected = Decimal("49.00") + cents(graduated(tokens[cid])) + cents(EVENTS_PER_CUSTOMER * Decimal("0.001"))
        assert Decimal(inv["total"]) == expected, (cid, inv["total"], expected)
        assert not store.customer_items("late", cid)
        numbers.append(inv["number"])
    acme = store.list_invoices("acme", 10, None)[0]
    numbers += [i["number"] for i in acme]
    assert sorted(numbers) == [f"T-{n:06d}" for n in range(1, len(numbers) + 1)]   # gapless, no duplicates
    assert container.billing.run(datetime.fromisoformat("2026-11-01T00:00:00Z")).invoices == []
    assert not store.list_dead_letters(10, None)[0]
    assert phase["ingest"] > 10 and phase["aggregation"] > 0 and phase["close"] > 0, phase
    with capsys.disabled():
        print(f"\n[faults] injected {faults.total()} of {faults.sends} DynamoDB calls "
              f"(ingest {phase['ingest']}, aggregation {phase['aggregation']}, close {phase['close']}); "
              f"stream batches retried {failed_batches}; close runs {runs}; by kind: {dict(faults.injected)}")
