"""Make docs/images/usage.png (and .svg): a customer's daily usage as `meterbill report usage
--customer … --out usage.png` draws it, produced by the real code.

    .venv/bin/python docs/make_usage_chart.py

A month of synthetic usage (weekday peaks, quiet weekends, a launch spike) for a customer in
Europe/Berlin is stored as 15-minute buckets in in-process moto, read back by the real usage
service in daily windows of the customer's timezone (October holds the end of summer time: that
local day has 25 hours), and drawn by ``meterbill.rendering.charts``. Deterministic: no clock,
no randomness, the same bytes each run (matplotlib and its fonts being the same).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _k, _v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
               "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled", "POWERTOOLS_METRICS_DISABLED": "true"}.items():
    os.environ[_k] = _v

NOW = datetime(2026, 11, 5, 12, tzinfo=timezone.utc)


def tokens_on(day: int, weekday: int) -> int:
    base = 42_000 if weekday < 5 else 9_000
    trend = day * 900
    spike = 60_000 if day == 21 else 0   # a launch
    return base + trend + spike + (day * 7919) % 5_000


def main() -> None:
    import boto3
    from moto import mock_aws

    from infra.template import create_tables
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings
    from meterbill.domain.instants import parse_instant
    from meterbill.rendering.charts import usage_chart_png, usage_chart_svg

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"EventsTable": "docs-events", "BillingTable": "docs-billing"})
        c = bootstrap(Settings(events_table="docs-events", billing_table="docs-billing"), client=client,
                      clock=lambda: NOW, cache_ttl_s=0)
        c.catalog.put_meter("tokens", {"event_type": "llm.completion", "aggregation": "sum", "property": "tokens"})
        c.catalog.put_plan("pro", {"currency": "EUR", "interval": "month", "base_fee": "49.00", "charges": [
            {"meter": "tokens", "model": "per_unit", "unit_amount": "0.00002"}]})
        c.catalog.put_customer("acme", {"name": "Acme GmbH", "plan": "pro", "timezone": "Europe/Berlin",
                                        "started_at": "2026-10-01T00:00:00Z", "billing_anchor": "2026-10-01T00:00:00Z"})
        start = datetime(2026, 9, 30, 22, tzinfo=timezone.utc)  # 2026-10-01 00:00 in Berlin
        events = []
        for day in range(31):
            at = start + timedelta(days=day, hours=12)
            events.append({"id": f"d{day}", "customer": "acme", "type": "llm.completion",
                           "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "properties": {"tokens": tokens_on(day + 1, at.weekday())}})
        import json

        result = c.ingest.ingest(json.dumps({"events": events}), "application/json")
        assert not result.as_dict().get("errors"), result.as_dict()
        from meterbill.local.stack import StreamPoller

        def apply(event: dict, _ctx: object) -> dict:
            c.aggregation.apply(event["Records"])
            return {"batchItemFailures": []}

        StreamPoller(None, "docs-events", apply).drain()
        series = c.usage.series("acme", "2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z", "tokens", "day")
    points = [(parse_instant(p["start"], "start"), Decimal(p["value"])) for p in series["meters"][0]["points"]]
    title = "tokens — Acme GmbH, October 2026 (daily, Europe/Berlin)"
    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    (out / "usage.png").write_bytes(usage_chart_png(points, title, "tokens"))
    (out / "usage.svg").write_text(usage_chart_svg(points, title, "tokens"), encoding="utf-8")
    print(f"{len(points)} daily points -> {out / 'usage.png'}, {out / 'usage.svg'}")


if __name__ == "__main__":
    main()
