"""Spend check latency: ``GET /v1/customers/{id}/spend-check?amount=…`` through the routed API's
Lambda path (``app.resolve`` on an API Gateway HTTP API event: admission with the API key check,
the route, the service, one BatchGetItem) on in-process moto, one thread.

The customer has a budget and a month of usage so far (3 meters × 24 days × 24 hours = 1,728 hour
items): the running bill is refreshed once (as the aggregator would after a batch), then every
call reads it. ``spend_check_rerate_p50_ms`` times the same answer computed by re-rating the open
period (the upcoming invoice), which the spend check does not do per call. Measures our code on
moto, not API Gateway + Lambda + DynamoDB (add their network round trips on AWS)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from bench import report

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
CUSTOMER = "spend-bench"
KEY = "mbbench_read_0123456789abcdef"
CALLS = 500
METERS = ("api_calls", "tokens", "storage")
PLAN = {"currency": "USD", "interval": "month", "base_fee": "99.00", "charges": [
    {"meter": "api_calls", "model": "graduated",
     "tiers": [{"up_to": "10000", "unit_amount": "0.001"}, {"up_to": None, "unit_amount": "0.0005"}]},
    {"meter": "tokens", "model": "per_unit", "unit_amount": "0.00002"},
    {"meter": "storage", "model": "per_unit", "unit_amount": "0.1"}]}


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _event(path: str, query: dict[str, str]) -> dict[str, Any]:
    raw_query = "&".join(f"{k}={v}" for k, v in query.items())
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": raw_query,
            "headers": {"authorization": f"Bearer {KEY}", "host": "api.example"}, "queryStringParameters": query,
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                        "userAgent": "bench"}, "requestId": "bench", "routeKey": "$default",
                               "stage": "$default", "timeEpoch": 0},
            "isBase64Encoded": False}


def run() -> None:
    import boto3
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from moto import mock_aws

    from infra.template import create_tables
    from meterbill.api.app import build_app
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.domain.meters import BucketState
    from meterbill.local.moto_server import patch_moto
    from meterbill.ports import UsageItem

    patch_moto()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "bench-events", "BillingTable": "bench-billing"})
        c = bootstrap(Settings(events_table="bench-events", billing_table="bench-billing", usage_wait_s=0,
                               stream_settle_s=0, portal_secret="bench-portal-secret-0123456789"),
                      client=client, clock=lambda: NOW, cache_ttl_s=10)
        for meter in METERS:
            c.catalog.put_meter(meter, {"event_type": "bench", "aggregation": "sum", "property": "v"})
        c.catalog.put_plan("bench", PLAN)
        c.catalog.put_customer(CUSTOMER, {"name": "Spend Bench", "plan": "bench", "started_at": "2026-11-01T00:00:00Z",
                                          "billing_anchor": "2026-11-01T00:00:00Z"})
        first = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp())
        items = 0
        for meter in METERS:
            for hour in range(first, first + 24 * 86400, 3600):
                cells = {hour + q * 900: BucketState(count=3, sum=Decimal(17 + q))
                         for q in range(4)}
                assert c.billing_store.put_usage_item(UsageItem((CUSTOMER, hour, meter, ""), cells, {}, 1), None)
                items += 1
        c.keys.create(["read"], name="bench", secret=KEY)
        c.budgets.put(CUSTOMER, {"amount": "1000000.00"}, "bench")   # refreshes the running bill once
        app = build_app(APIGatewayHttpResolver, lambda: c)
        event = _event(f"/v1/customers/{CUSTOMER}/spend-check", {"amount": "12.50"})
        for _ in range(30):                                       # warm-up: imports, key cache
            resp = app.resolve(dict(event), None)
            assert resp["statusCode"] == 200, resp
        samples = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            app.resolve(dict(event), None)
            samples.append((time.perf_counter() - t0) * 1000)
        rerate = []
        for _ in range(3):
            t0 = time.perf_counter()
            c.billing.upcoming(CUSTOMER)
            rerate.append((time.perf_counter() - t0) * 1000)
    note = f"{CALLS} calls, in-process app on moto, {items:,} hour items in the period"
    report("spend_check_p50_ms", _pct(samples, 50), "ms", note=note)
    report("spend_check_p99_ms", _pct(samples, 99), "ms", note=note)
    report("spend_check_rerate_p50_ms", _pct(rerate, 50), "ms",
           note="the same period re-rated (upcoming invoice): what each call would cost without the running bill")
