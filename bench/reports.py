"""Reports over 10,000 customers: revenue, usage (top customers) and aging, on in-process moto.

Seeded straight into the billing table (``meterbill.local.seed``: customers and one month of final
invoices each — paid, open, overdue — with two usage lines, laid out as the stores write them,
indexes included), not through the API. Each report then runs through the real service and
adapter (``ReportService`` over ``DynamoReportReader``): time is the median wall time of 3 runs on
moto (moto's own query work included, so an upper bound for DynamoDB's service time plus this
code's); RCU is what DynamoDB would bill for the reads the report made: each Query page (at most
1 MB) sums its items' sizes and rounds up to 4 KB, half a unit per 4 KB (eventually consistent).
A ProjectionExpression does not lower it: the whole item is read."""

from __future__ import annotations

import math
import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bench import report
from bench.wcu import item_size

CUSTOMERS = int(os.environ.get("BENCH_REPORT_CUSTOMERS", "10000"))  # named in the figures: 10k
SIZE = f"{CUSTOMERS // 1000}k" if CUSTOMERS >= 1000 else str(CUSTOMERS)
RUNS = int(os.environ.get("BENCH_REPORT_RUNS", "3"))
PAGE = 1024 * 1024
NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
OCT, NOV = datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc)
SEGMENTS = ("enterprise", "growth", "smb", "self-serve")
CURRENCIES = ("USD", "USD", "EUR", "GBP")


def seed(client: Any, table: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from meterbill.local.seed import customer_item, invoice_doc, invoice_item, put_items

    customers, invoices = [], []
    for i in range(CUSTOMERS):
        cid = f"cust-{i:05d}"
        currency = CURRENCIES[i % len(CURRENCIES)]
        customers.append(customer_item(cid, currency=currency, plan=("pro", "scale")[i % 2],
                                       tags={"segment": SEGMENTS[i % len(SEGMENTS)], "region": ("eu", "us")[i % 2]}))
        paid = OCT + timedelta(days=35) if i % 3 == 0 else None
        invoices.append(invoice_item(invoice_doc(
            cid, i + 1, OCT, NOV, plan=("pro", "scale")[i % 2], currency=currency, total=f"{50 + i % 500}.{i % 100:02d}",
            status="paid" if paid else "final", terms_days=(0, 15, 30, 60)[i % 4], paid_at=paid,
            usage={"tokens": str(1000 + i * 7), "calls": str(10 + i % 97)})))
    put_items(client, table, customers)
    put_items(client, table, invoices)
    return customers, invoices


def billed_rcu(items: list[dict[str, Any]]) -> float:
    """Eventually consistent Query pages of at most 1 MB, each rounded up to 4 KB, 0.5 RCU per 4 KB."""
    from meterbill.adapters.dynamo_codec import to_item

    rcu, page = 0.0, 0
    for item in items:
        size = item_size(to_item(item))
        if page + size > PAGE:
            rcu += 0.5 * math.ceil(page / 4096)
            page = 0
        page += size
    return rcu + 0.5 * max(1, math.ceil(page / 4096))


def run() -> None:
    import boto3
    from moto import mock_aws

    from infra.template import create_tables
    from meterbill.adapters.dynamo_reports import DynamoReportReader
    from meterbill.local.moto_server import patch_moto
    from meterbill.services.reports import ReportService

    patch_moto()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "bench-events", "BillingTable": "bench-billing"})
        t0 = time.perf_counter()
        customers, invoices = seed(client, "bench-billing")
        seeded_s = time.perf_counter() - t0
        service = ReportService(lambda: DynamoReportReader(client, "bench-billing"), lambda: NOW)
        span = {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
        cases = {
            "revenue": (lambda: service.revenue(span["start"], span["end"], group_by="segment"), True),
            "usage": (lambda: service.usage(span["start"], span["end"], meter="tokens", limit=10), False),
            "aging": (lambda: service.aging(None), False),
        }
        inv_rcu, cus_rcu = billed_rcu(invoices), billed_rcu(customers)
        _cpu(invoices, customers)
        for name, (fn, reads_customers) in cases.items():
            walls = []
            for _ in range(RUNS):
                t = time.perf_counter()
                out = fn()
                walls.append(time.perf_counter() - t)
            assert out["rows"], name
            rcu = inv_rcu + (cus_rcu if reads_customers else 0)
            read = f"{len(invoices):,} invoices" + (f" + {len(customers):,} customers" if reads_customers else "")
            report(f"report_{name}_{SIZE}_ms", statistics.median(walls) * 1000, "ms",
                   note=f"{read} read through the index, {len(out['rows'])} rows; median of {RUNS} on in-process moto "
                        f"(range {min(walls) * 1000:.0f}-{max(walls) * 1000:.0f} ms; seeded in {seeded_s:.0f} s)")
            report(f"report_{name}_{SIZE}_rcu", rcu, "RCU",
                   note=f"{read}: mean item {sum(item_size(_ddb(i)) for i in invoices) / len(invoices):.0f} B; "
                        "eventually consistent 1 MB pages")


class _Replay:
    """The reader's answers without DynamoDB or moto: the same items, as DynamoDB JSON pages decode."""

    def __init__(self, invoices: list[dict[str, Any]], customers: list[dict[str, Any]]) -> None:
        from meterbill.adapters.dynamo_codec import to_item

        self._invoices, self._customers = [to_item(i) for i in invoices], [to_item(c) for c in customers]
        self.rcu, self.items = 0.0, 0

    def invoices(self, customer_id: str | None, period_from: str, period_to: str, lines: bool = False) -> Any:
        from meterbill.adapters.dynamo_codec import from_item

        for raw in self._invoices:
            doc = from_item(raw)
            if period_from <= doc["period"]["start"] < period_to:
                yield doc

    def customers(self) -> Any:
        from meterbill.adapters.dynamo_codec import from_item

        return (from_item(c) for c in self._customers)


def _cpu(invoices: list[dict[str, Any]], customers: list[dict[str, Any]]) -> None:
    """The service's own CPU per report (items decoded, grouped, summed), without moto's query work."""
    from meterbill.services.reports import ReportService

    replay = _Replay(invoices, customers)
    service = ReportService(lambda: replay, lambda: NOW)
    for name, fn in {"revenue": lambda: service.revenue("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z",
                                                        group_by="segment"),
                     "usage": lambda: service.usage("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", meter="tokens"),
                     "aging": lambda: service.aging(None)}.items():
        cpu = []
        for _ in range(RUNS):
            t = time.process_time()
            fn()
            cpu.append(time.process_time() - t)
        report(f"report_{name}_{SIZE}_cpu_ms", statistics.median(cpu) * 1000, "ms CPU",
               note=f"the service over {len(invoices):,} invoices decoded from DynamoDB JSON, no moto; median of {RUNS}")


def _ddb(item: dict[str, Any]) -> dict[str, Any]:
    from meterbill.adapters.dynamo_codec import to_item

    return to_item(item)
