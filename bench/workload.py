"""Deterministic, realistic workloads shared by the benchmarks."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
HOUR_START = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)        # every event lies in [10:00, 11:00)
NOW = datetime(2026, 11, 5, 11, 0, 30, tzinfo=UTC)           # the service clock during the benches
CLOSED_THROUGH = "2026-11-01T00:00:00Z"                        # customers already invoiced for October
EVENT_TYPE = "llm.completion"
MODELS = ("gpt-small", "gpt-large", "embed-v3", "rerank-2")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")

# Two meters on the same event type: a sum of an int property and a sum of a decimal string.
METERS: dict[str, dict[str, Any]] = {
    "llm_tokens": {"event_type": EVENT_TYPE, "aggregation": "sum", "property": "output_tokens",
                   "name": "LLM output tokens", "unit": "token"},
    "gpu_seconds": {"event_type": EVENT_TYPE, "aggregation": "sum", "property": "gpu_seconds",
                    "name": "GPU seconds", "unit": "s"},
}


def customers(n: int = 50, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"cus_{rng.getrandbits(48):012x}" for _ in range(n)]


def rfc3339(dt: datetime, ms: bool = True) -> str:
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{dt.microsecond // 1000:03d}Z" if ms else text + "Z"


def events(n: int = 1000, n_customers: int = 50, seed: int = 1, start: datetime = HOUR_START,
           span_s: float = 3600.0) -> list[dict[str, Any]]:
    """``n`` events: UUID ids, ~``n_customers`` customers, one type, distinct RFC 3339 timestamps
    within ``span_s`` of ``start`` (3 in 4 with milliseconds, like JavaScript's toISOString),
    4 properties: a string, an int, a decimal string and another string."""
    rng = random.Random(seed)
    who = customers(n_customers)
    out = []
    offsets = sorted(rng.uniform(0, span_s) for _ in range(n))
    for i, off in enumerate(offsets):
        ts = start + timedelta(seconds=off)
        out.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "customer": rng.choice(who),
            "type": EVENT_TYPE,
            "timestamp": rfc3339(ts, ms=i % 4 != 0),
            "properties": {"model": rng.choice(MODELS), "output_tokens": rng.randint(1, 4000),
                           "gpu_seconds": f"{rng.uniform(0.01, 30):.3f}", "region": rng.choice(REGIONS)},
        })
    return out


def body(evts: list[dict[str, Any]]) -> str:
    """The request body as a client sends it (API Gateway hands the handler a str)."""
    return json.dumps({"events": evts})


def meter_items(codes: list[str]) -> list[dict[str, Any]]:
    """Meter items in DynamoDB JSON, laid out exactly as DynamoBillingStore.put_catalog writes them."""
    from meterbill.adapters.dynamo_codec import to_item
    from meterbill.domain.meters import meter_to_dict, parse_meter

    items = []
    for code in codes:
        now = "2026-10-01T00:00:00Z"
        doc = {**meter_to_dict(parse_meter(code, METERS[code])), "created_at": now, "updated_at": now,
               "version": 1}
        items.append(to_item({**doc, "pk": f"METER#{code}", "sk": "METER", "gsi1pk": "METERS", "gsi1sk": code}))
    return items


def profile_item(customer_id: str, closed_through: str = CLOSED_THROUGH) -> dict[str, Any]:
    """A customer profile in DynamoDB JSON, laid out as CatalogService.put_customer +
    DynamoBillingStore.put_customer write it (already invoiced once: ``closed_through`` set)."""
    from meterbill.adapters.dynamo_codec import to_item

    doc = {"id": customer_id, "name": f"Customer {customer_id}", "email": f"billing@{customer_id}.example",
           "plan": "pro", "currency": "USD", "started_at": "2026-09-01T00:00:00Z",
           "billing_anchor": "2026-09-01T00:00:00Z", "timezone": "UTC", "payment_terms_days": 30,
           "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"}, "metadata": {},
           "created_at": "2026-09-01T00:00:00Z", "updated_at": "2026-11-01T00:00:05Z", "version": 3,
           "closed_through": closed_through, "next_close": "2026-12-01T00:00:00Z"}
    return to_item({**doc, "pk": f"CUS#{customer_id}", "sk": "PROFILE", "gsi1pk": "CUSTOMERS",
                    "gsi1sk": customer_id, "gsi2pk": "DUE", "gsi2sk": f"{doc['next_close']}#{customer_id}"})


def stream_records(items: list[dict[str, Any]], first_seq: int = 4 * 10**20,
                   table: str = "meterbill-events") -> list[dict[str, Any]]:
    """Lambda-shaped DynamoDB stream INSERT records for the event items written (in write order)."""
    out = []
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-11-01T00:00:00.000"
    for i, item in enumerate(items):
        out.append({
            "eventID": f"{i:032x}", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "eventSourceARN": arn,
            "dynamodb": {"ApproximateCreationDateTime": NOW.timestamp(), "Keys": {"id": item["id"]},
                         "NewImage": item, "SequenceNumber": str(first_seq + 100 * i), "SizeBytes": 200,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"},
        })
    return out
