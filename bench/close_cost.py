"""What closing one customer costs (a 5-meter plan, a month of 15-minute buckets for each meter),
and the arithmetic for closing 100,000 customers on AWS.

Method: record, then replay. (1) On in-process moto, the real services store a catalog, one
customer and its month of buckets, then close the customer once while every DynamoDB request and
its raw HTTP response are recorded. (2) A container on the production client configuration
(``bootstrap.dynamodb_client``) closes the customer again and again; a ``before-send`` handler
answers each request with the recorded response for it (per request, in recorded order, so the
profile re-read after the commit sees the period closed), so serialisation, signing and response
parsing all run and only the network is missing. CPU time per close is the figure; DynamoDB
calls, read units (from the sizes of the items each read returned, by DynamoDB's rules) and write
units (from the items each write carries) are counted from the same replay.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import zlib
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from botocore.awsrequest import AWSResponse

from bench import report
from bench.fakeddb import _Raw
from bench.rating import AGGREGATION, PLAN
from bench.wcu import item_size

CUSTOMER = "cus_close_bench"
MONTH_START = datetime(2026, 10, 1, tzinfo=timezone.utc)
MONTH_END = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 1, 0, 5, tzinfo=timezone.utc)
BUCKET_S = 900
CLOSES, WARMUP = 20, 3

# Per-call DynamoDB latency assumed on AWS (p50, same region, warm connection): AWS states
# "consistently low latency (typically in the single digit milliseconds)"
# (https://docs.aws.amazon.com/whitepapers/latest/comparing-dynamodb-and-hbase-for-nosql/amazon-dynamodb-architecture-overview.html).
LATENCY_MS = {"GetItem": 5.0, "Query": 5.0, "BatchGetItem": 5.0, "PutItem": 5.0, "UpdateItem": 5.0,
              "DeleteItem": 5.0, "TransactWriteItems": 10.0}
SQS_BATCH_MS = 10.0          # one SendMessageBatch (10 messages), assumed like a DynamoDB write
# The sequencer (BillingService.number_invoices): a pass numbers NUMBER_BATCH invoices with a Query of
# the queue, a GetItem of the counter and one TransactWriteItems of 1 + 2 x NUMBER_BATCH items (a large
# transaction: assumed 25 ms). Passes run beside the workers; counted here as if after them.
SEQUENCER_PASS_MS = 5.0 + 5.0 + 25.0
# What the close worker adds per message around close_customer (BillingRunService.handle): the run
# and the customer's previous outcome read, the outcome and counters written in one transaction.
WORKER_CALLS = {"GetItem": 2, "TransactWriteItems": 1}
DEFAULT_CONCURRENCY = 50     # when template.yaml has no CloseWorkerConcurrency parameter yet
LAMBDA_FULL_VCPU_MB = 1769   # Lambda gives a function one full vCPU at 1,769 MB, a share below that
CUSTOMERS = 100_000


def _key(operation: str, body: bytes) -> tuple[str, str]:
    """A request by its content, without botocore's generated idempotency token."""
    doc = json.loads(body or b"{}")
    doc.pop("ClientRequestToken", None)
    return operation, json.dumps(doc, sort_keys=True)


class Recording:
    """Requests and raw responses of a moto-backed client, in order, keyed by content."""

    def __init__(self, client: Any) -> None:
        self.on = False
        self.answers: dict[tuple[str, str], list[tuple[int, dict[str, str], bytes]]] = defaultdict(list)
        self._pending: list[tuple[str, str]] = []
        client.meta.events.register_first("before-send.dynamodb", self._request)
        client.meta.events.register("after-call.dynamodb", self._response)

    def _request(self, request: Any, event_name: str = "", **_: Any) -> None:
        if self.on:
            self._pending.append(_key(event_name.rsplit(".", 1)[-1], request.body))

    def _response(self, http_response: Any, **_: Any) -> None:
        if self.on and self._pending:
            self.answers[self._pending.pop()].append(
                (http_response.status_code, dict(http_response.headers), http_response.content))


class Replay:
    """Answers each request with the next recorded response for it; counts calls and capacity."""

    def __init__(self, answers: dict[tuple[str, str], list[tuple[int, dict[str, str], bytes]]]) -> None:
        self._answers = answers
        self._next: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[str] = Counter()
        self.rcu = 0.0
        self.wcu = 0.0
        self.projected = 0  # reads whose cost the response cannot show (projection or filter)
        self._sizes: dict[tuple[str, str], int] = {}  # item key -> size, from what reads returned
        self.metering = False

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.dynamodb", self._send)

    def rewind(self) -> None:
        self._next.clear()

    def _send(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse:
        operation = event_name.rsplit(".", 1)[-1]
        key = _key(operation, request.body)
        recorded = self._answers.get(key)
        if not recorded:
            raise AssertionError(f"close_cost: no recorded answer for {operation} {key[1][:300]}")
        status, headers, body = recorded[min(self._next[key], len(recorded) - 1)]
        self._next[key] += 1
        if self.metering:
            self.calls[operation] += 1
            self._meter(operation, json.loads(key[1]), json.loads(body or b"{}"))
        headers = {**headers, "x-amz-crc32": str(zlib.crc32(body))}
        return AWSResponse(request.url, status, headers, _Raw(body))

    # -- capacity, by DynamoDB's rules (developer guide, "DynamoDB read and write operations") ------
    def _remember(self, item: dict[str, Any]) -> int:
        size = item_size(item)
        if "pk" in item and "sk" in item:
            self._sizes[(item["pk"]["S"], item["sk"]["S"])] = size
        return size

    def _meter(self, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        strong = 1.0 if request.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            item = response.get("Item")
            self.rcu += strong * max(1, math.ceil(self._remember(item) / 4096)) if item else strong
            self.projected += "ProjectionExpression" in request
        elif operation == "Query":  # the page's item sizes summed, then rounded up to 4 KB
            total = sum(self._remember(i) for i in response.get("Items", []))
            self.rcu += strong * max(1, math.ceil(total / 4096))
            self.projected += "ProjectionExpression" in request or response.get("ScannedCount", 0) > response.get(
                "Count", 0)
        elif operation == "BatchGetItem":  # every item on its own, rounded up to 4 KB
            for table, items in response.get("Responses", {}).items():
                consistent = 1.0 if request["RequestItems"][table].get("ConsistentRead") else 0.5
                self.rcu += sum(consistent * max(1, math.ceil(self._remember(i) / 4096)) for i in items)
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            self.wcu += self._write_units(operation.removesuffix("Item"), request)
        elif operation == "TransactWriteItems":  # 2 write units per 1 KB of each item in a transaction
            self.wcu += sum(2 * self._write_units(kind, part) for op in request["TransactItems"]
                            for kind, part in op.items())
        else:
            raise AssertionError(f"close_cost: no capacity rule for {operation}")

    def _write_units(self, kind: str, part: dict[str, Any]) -> int:
        """A put costs its item's size; an update, delete or condition check the size of the item
        it touches, as last read (1 KB when this close never read it)."""
        if kind == "Put":
            return max(1, math.ceil(item_size(part["Item"]) / 1024))
        key = part["Key"]
        size = self._sizes.get((key["pk"]["S"], key["sk"]["S"]), 1024) if "pk" in key else 1024
        return max(1, math.ceil(size / 1024))


def _bucket_state(meter: str, k: int) -> Any:
    """A plausible quarter hour of usage for ``meter`` (the k-th bucket of the month)."""
    from decimal import Decimal

    from meterbill.domain.meters import BucketState

    n = 20 + k % 37
    aggregation = AGGREGATION[meter]
    if aggregation == "sum":
        return BucketState(count=n, sum=Decimal(n * 1375 + k % 1000) / (1000 if meter == "gpu_seconds" else 1))
    if aggregation == "max":
        v = Decimal(100 + k % 400) / 10
        return BucketState(count=n, max=v, min=v)
    if aggregation == "unique_count":
        return BucketState(count=n, uniques={f"s:user-{(k + j) % 150}" for j in range(3)})
    return BucketState(count=n)


def _record() -> tuple[dict[tuple[str, str], list[tuple[int, dict[str, str], bytes]]], int]:
    """One customer and its month on in-process moto, closed once with every request recorded."""
    import boto3
    from moto import mock_aws

    from infra.template import create_tables
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.ports import UsageItem
    from meterbill.services.billing import RunSummary

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "bench-events", "BillingTable": "bench-billing"})
        container = bootstrap(Settings(events_table="bench-events", billing_table="bench-billing", usage_wait_s=0,
                                       stream_settle_s=0), client=client, clock=lambda: NOW, cache_ttl_s=0)
        for meter, aggregation in AGGREGATION.items():
            container.catalog.put_meter(meter, {"event_type": "bench", "aggregation": aggregation,
                                                **({} if aggregation == "count" else {"property": "v"})})
        container.catalog.put_plan("scale", PLAN)
        container.catalog.put_customer(CUSTOMER, {
            "name": "Close Bench Ltd", "email": "ap@close-bench.example", "plan": "scale",
            "started_at": "2026-09-01T00:00:00Z", "billing_anchor": "2026-09-01T00:00:00Z",
            "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"}})
        first, last = int(MONTH_START.timestamp()), int(MONTH_END.timestamp())
        buckets = 0
        for meter in AGGREGATION:  # as the aggregator stores them: one item per hour, its quarter-hour cells
            cells: dict[int, dict[int, Any]] = {}
            for k, start_s in enumerate(range(first, last, BUCKET_S)):
                cells.setdefault(start_s - start_s % 3600, {})[start_s] = _bucket_state(meter, k)
                buckets += 1
            for hour, states in cells.items():
                assert container.billing_store.put_usage_item(
                    UsageItem((CUSTOMER, hour, meter, ""), states, {}, 1), None)
        # September is already invoiced: October is the period this close finalizes
        summary = RunSummary(as_of=MONTH_START.isoformat())
        container.billing.close_customer(CUSTOMER, MONTH_START, summary)
        assert len(summary.invoices) == 1, summary.as_dict()
        recording = Recording(client)
        recording.on = True
        summary = RunSummary(as_of=MONTH_END.isoformat())
        container.billing.close_customer(CUSTOMER, MONTH_END, summary)
        recording.on = False
        assert len(summary.invoices) == 1 and not summary.errors, summary.as_dict()
        return dict(recording.answers), buckets


def _replayed_closes(answers: dict[tuple[str, str], list[tuple[int, dict[str, str], bytes]]]) -> tuple[
        list[float], Replay]:
    from bench import use_fake_aws
    from meterbill.bootstrap import bootstrap, dynamodb_client
    from meterbill.config import Settings
    from meterbill.services.billing import RunSummary

    use_fake_aws()
    settings = Settings(events_table="bench-events", billing_table="bench-billing", usage_wait_s=0,
                        stream_settle_s=0)
    client = dynamodb_client(settings)
    replay = Replay(answers)
    replay.attach(client)
    container = bootstrap(settings, client=client, clock=lambda: NOW)  # the product's catalog cache: a warm worker
    cpu = []
    # timed closes unmetered (metering decodes every response again: not the product's CPU), then
    # as many metered ones for the calls and capacity (averaged: the catalog cache re-reads now and then)
    for i in range(WARMUP + 2 * CLOSES):
        replay.rewind()
        replay.metering = i >= WARMUP + CLOSES
        summary = RunSummary(as_of=MONTH_END.isoformat())
        t0 = time.process_time()
        container.billing.close_customer(CUSTOMER, MONTH_END, summary)
        elapsed = time.process_time() - t0
        assert len(summary.invoices) == 1 and not summary.errors, summary.as_dict()
        if WARMUP <= i < WARMUP + CLOSES:
            cpu.append(elapsed)
    return cpu, replay


def _template_figures() -> tuple[int, str, int]:
    """(close worker concurrency, where it came from, the worker's memory in MB)."""
    from infra.template import load_template

    template = load_template()
    parameter = (template.get("Parameters") or {}).get("CloseWorkerConcurrency")
    functions = {k: v for k, v in (template.get("Resources") or {}).items()
                 if v.get("Type") == "AWS::Serverless::Function"}
    worker = next((v for k, v in functions.items() if "Worker" in k), None)
    memory = ((worker or {}).get("Properties") or {}).get("MemorySize") or \
        ((template.get("Globals") or {}).get("Function") or {}).get("MemorySize", 512)
    if parameter is not None and "Default" in parameter:
        return int(parameter["Default"]), "template parameter CloseWorkerConcurrency", int(memory)
    return DEFAULT_CONCURRENCY, "CloseWorkerConcurrency not in template.yaml yet: assumed 50", int(memory)


def run() -> None:
    t0 = time.perf_counter()
    answers, buckets = _record()
    recorded_s = time.perf_counter() - t0
    cpu, replay = _replayed_closes(answers)
    cpu_ms = statistics.median(cpu) * 1000
    per_close = {op: n / CLOSES for op, n in replay.calls.items()}
    calls = sum(per_close.values())
    by_op = ", ".join(f"{n:g} {op}" for op, n in sorted(per_close.items()))
    report("close_customer_ms", cpu_ms, "ms CPU",
           note=f"1 customer, plan of 5 graduated meters, {buckets} 15-min buckets (a month x 5 meters); "
                f"median of {CLOSES} replayed closes, range {min(cpu) * 1000:.0f}-{max(cpu) * 1000:.0f} ms; "
                f"1 core, network short-circuited (recorded on moto in {recorded_s:.0f} s)")
    report("close_customer_ddb_calls", calls, "calls",
           note=by_op + f"; mean of {CLOSES} closes (the catalog cache re-reads after its 10 s)")
    report("close_customer_rcu", replay.rcu / CLOSES, "RCU",
           note="4 KB per strongly consistent read unit, half for eventually consistent; a Query page sums its "
                "items then rounds up" + (f"; {replay.projected} read(s) projected/filtered: undercounted"
                                          if replay.projected else ""))
    report("close_customer_wcu", replay.wcu / CLOSES, "WCU",
           note="1 KB per unit; TransactWriteItems 2 units per KB of each item; updates sized as last read")

    concurrency, source, memory = _template_figures()
    cpu_factor = max(1.0, LAMBDA_FULL_VCPU_MB / memory)
    ddb_ms = sum(n * LATENCY_MS[op] for op, n in per_close.items()) + \
        sum(n * LATENCY_MS[op] for op, n in WORKER_CALLS.items())
    per_customer_ms = cpu_ms * cpu_factor + ddb_ms
    workers_min = CUSTOMERS * per_customer_ms / concurrency / 60_000
    dispatch_min = CUSTOMERS / 10 * SQS_BATCH_MS / 60_000
    from meterbill.services.billing import NUMBER_BATCH

    sequencer_min = CUSTOMERS / NUMBER_BATCH * SEQUENCER_PASS_MS / 60_000
    total = workers_min + dispatch_min + sequencer_min
    latencies = ", ".join(f"{op} {ms:g} ms" for op, ms in LATENCY_MS.items() if op in replay.calls)
    report("close_100k_workers_minutes", workers_min, "minutes",
           note=f"100,000 x ({cpu_ms:.1f} ms CPU x {cpu_factor:.2f} (Lambda at {memory} MB: "
                f"{min(1.0, memory / LAMBDA_FULL_VCPU_MB):.2f} vCPU) + {ddb_ms:.0f} ms DynamoDB: {calls:.1f} calls + the worker's 3 at "
                f"{latencies}) / {concurrency} workers ({source})")
    report("close_100k_dispatch_minutes", dispatch_min, "minutes",
           note=f"100,000 / 10 per SendMessageBatch x {SQS_BATCH_MS:g} ms, one dispatcher")
    report("close_100k_sequencer_minutes", sequencer_min, "minutes",
           note=f"100,000 / {NUMBER_BATCH} invoices per numbering pass x {SEQUENCER_PASS_MS:g} ms "
                "(Query + GetItem + TransactWriteItems), sequential")
    report("close_100k_projected_minutes", total, "minutes", "< 15",
           note=f"workers {workers_min:.2f} + dispatcher {dispatch_min:.2f} + sequencer {sequencer_min:.2f}; "
                f"per customer {per_customer_ms:.0f} ms on Lambda")
