"""Shared fixtures: in-process moto with tables built from template.yaml, a controllable
clock, the real services wired by the composition root, and the real stream driver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

for _k, _v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_REGION": "us-east-1", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
               "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "meterbill-test"}.items():
    os.environ.setdefault(_k, _v)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    import boto3

    from infra.template import create_tables

    client = boto3.client("dynamodb", region_name="us-east-1")
    create_tables(client, {"EventsTable": "t-events", "BillingTable": "t-billing"})
    return client


@pytest.fixture
def container(ddb: Any, clock: FakeClock) -> Any:
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    return bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-"),
                     client=ddb, clock=clock, cache_ttl_s=0)


@pytest.fixture
def drain(container: Any) -> Any:
    """Apply everything in the events stream through the aggregation service, Lambda-style."""
    from meterbill.local.stack import StreamPoller

    def handler(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        container.aggregation.apply(event["Records"])
        return {"batchItemFailures": []}

    poller = StreamPoller(None, "t-events", handler)  # type: ignore[arg-type]
    return poller.drain


def ev(i: Any, customer: str = "acme", ts: str = "2026-10-10T10:00:00Z", type_: str = "api.call",
       **props: Any) -> dict[str, Any]:
    return {"id": str(i), "customer": customer, "type": type_, "timestamp": ts, "properties": props}
