"""What a reconciliation costs per customer-period, in DynamoDB requests and read units.

On in-process moto: ``CUSTOMERS`` customers on the 2-meter standard plan, each with ``EVENTS``
events over October, closed (final invoices); then one reconciliation of October with every
customer's raw events recounted (``sample`` = all) while every DynamoDB request is counted by
operation. The Scan's read units are DynamoDB's own figure (``ReturnConsumedCapacity``, which moto
computes from the item sizes); the other reads are counted as requests. Wall time on moto is
printed for orientation only (moto is not DynamoDB).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

CUSTOMERS = 10
EVENTS = 100
NOW = datetime(2026, 11, 5, 12, tzinfo=timezone.utc)


def run() -> None:
    import boto3
    from moto import mock_aws

    from infra.template import create_tables
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.local.moto_server import patch_moto
    from meterbill.local.stack import StreamPoller
    from bench.wcu import item_size
    from tests.conftest import ev, standard_plan

    patch_moto()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "b-events", "BillingTable": "b-billing"})
        c = bootstrap(Settings(events_table="b-events", billing_table="b-billing", usage_wait_s=0, stream_settle_s=0),
                      client=client, clock=lambda: NOW, cache_ttl_s=0)
        standard_plan(c)
        for i in range(CUSTOMERS):
            cid = f"cus{i:03d}"
            c.catalog.put_customer(cid, {"name": cid, "plan": "pro", "started_at": "2026-10-01T00:00:00Z",
                                         "billing_anchor": "2026-10-01T00:00:00Z"})
            events = [ev(f"{cid}-{j}", customer=cid, ts=f"2026-10-{1 + j % 30:02d}T{j % 24:02d}:{j % 4 * 15:02d}:00Z",
                         tokens=j) for j in range(EVENTS)]
            for k in range(0, EVENTS, 500):
                c.ingest.ingest(json.dumps({"events": events[k:k + 500]}), None)

        def apply(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
            c.aggregation.apply(event["Records"])
            return {"batchItemFailures": []}

        StreamPoller(None, "b-events", apply).drain()  # type: ignore[arg-type]
        c.billing.run(datetime(2026, 11, 1, tzinfo=timezone.utc))
        sizes = [item_size(i) for page in client.get_paginator("scan").paginate(TableName="b-events")
                 for i in page["Items"]]
        calls: Counter[str] = Counter()
        client.meta.events.register("before-parameter-build.dynamodb",
                                    lambda model, **_: calls.update([model.name]))
        t0 = time.perf_counter()
        report = c.reconciliation.run("2026-10", sample=CUSTOMERS)
        wall = time.perf_counter() - t0
    assert report["clean"], report
    per = {op: n / CUSTOMERS for op, n in calls.items() if op != "Scan"}
    print(f"reconcile_requests_per_customer_period: {sum(per.values()):.1f} requests "
          f"({', '.join(f'{op} {n:.1f}' for op, n in sorted(per.items()))}; {CUSTOMERS} customers x {EVENTS} events)")
    # DynamoDB bills a strongly consistent Scan page the summed size of the items it read, per 4 KB
    # (moto's ConsumedCapacity is not size-based: computed here from the items, by DynamoDB's rule)
    units = math.ceil(sum(sizes) / 4096)
    print(f"reconcile_scan_read_units_per_1000_events: {units / len(sizes) * 1000:.1f} RCU "
          f"(strongly consistent Scan of the whole events table: {len(sizes)} items of {sum(sizes) / len(sizes):.0f} "
          f"bytes on average, {units} RCU, {calls['Scan']} Scan page(s))")
    print(f"reconcile_moto_wall_s: {wall:.2f} s ({CUSTOMERS} customers recounted, in-process moto)")
