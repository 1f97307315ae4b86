"""Shared fixtures: in-process moto with tables built from template.yaml, a controllable
clock, the real services wired by the composition root, and the real stream driver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# CI runs the property tests with a fixed derivation of examples (repeatable, no flaky landing);
# local runs keep exploring new random examples.
# No run has a per-example deadline: a busy machine must not fail a property that holds (a test
# racing a timer). CI also derives its examples deterministically.
_NO_TIMERS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, **_NO_TIMERS)
hypothesis_settings.register_profile("local", **_NO_TIMERS)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "local")

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

    from meterbill.local.moto_server import patch_moto

    patch_moto()   # concurrent writers: unique stream sequence numbers, transactions that undo nothing of others
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
def close_queue_url(aws: None) -> str:
    import boto3

    from infra.template import create_queues

    return create_queues(boto3.client("sqs", region_name="us-east-1"), {"CloseQueue": "t-close"})["CloseQueue"]


@pytest.fixture
def container(ddb: Any, clock: FakeClock, close_queue_url: str) -> Any:
    from meterbill.bootstrap import bootstrap
    from meterbill.config import Settings

    # moto's stream is synchronous (no settle time); a run that finds unapplied usage decides at once.
    # A customer waiting for usage is back on the close queue at once (the tests drive the queue).
    return bootstrap(Settings(events_table="t-events", billing_table="t-billing", invoice_prefix="T-",
                              usage_wait_s=0, stream_settle_s=0, close_queue_url=close_queue_url,
                              close_wait_retry_s=0),
                     client=ddb, clock=clock, cache_ttl_s=0)


@pytest.fixture
def close_worker(container: Any, close_queue_url: str) -> Any:
    """The close queue consumed Lambda-style by the close worker's own handler code (on the test's
    container): ``close_worker.drain()`` handles every visible message."""
    import boto3

    from functions.close_worker import process
    from meterbill.local.stack import QueueWorker

    return QueueWorker(boto3.client("sqs", region_name="us-east-1"), close_queue_url,
                       lambda event, ctx: process(event, ctx, container.billing_runs))


def finished_run(container: Any, worker: Any, run: dict[str, Any]) -> dict[str, Any]:
    """Drive the close queue until ``run`` is no longer dispatching or running; the run as GET
    shows it, plus ``invoices_created`` / ``drafts`` from its outcomes (what the synchronous run
    answered before the fan-out)."""
    worker.drain()
    view = container.billing_runs.view(run["id"])
    invoices: list[str] = []
    drafts: list[str] = []
    cursor = None
    while True:
        outcomes, cursor = container.billing_store.run_outcomes(run["id"], None, 100, cursor)
        for o in outcomes:
            invoices += o.get("invoices", [])
            drafts += o.get("drafts", [])
        if not cursor:
            break
    return {**view, "invoices_created": invoices, "drafts": drafts,
            "errors": [{"customer": f["customer"], "error": f["reason"]} for f in view["failures"]]}


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


def standard_plan(container: Any) -> Any:
    """Meters tokens (sum) + calls (count) and plan 'pro' (49.00 base, graduated tokens, per-unit calls)."""
    c = container.catalog
    c.put_meter("tokens", {"event_type": "api.call", "aggregation": "sum", "property": "tokens"})
    c.put_meter("calls", {"event_type": "api.call", "aggregation": "count"})
    c.put_plan("pro", {"currency": "USD", "interval": "month", "base_fee": "49.00", "charges": [
        {"meter": "tokens", "model": "graduated",
         "tiers": [{"up_to": "1000", "unit_amount": "0.01"}, {"up_to": None, "unit_amount": "0.005"}]},
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}]})
    return c


def standard_catalog(container: Any) -> Any:
    """Meters tokens (sum) + calls (count), plan 'pro' (49.00 base, graduated tokens, per-unit
    calls) and customer 'acme' billed monthly from 2026-10-01, net 15."""
    c = standard_plan(container)
    c.put_customer("acme", {"name": "Acme", "email": "ap@acme.example", "plan": "pro",
                            "started_at": "2026-10-01T00:00:00Z", "billing_anchor": "2026-10-01T00:00:00Z",
                            "payment_terms_days": 15})
    return c


def usage_cell(ddb: Any, customer: str, start_s: int, meter: str, group: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored usage item (raw DynamoDB JSON) holding the quarter-hour starting at ``start_s``,
    and that quarter-hour's cell in it (item layout: meterbill/adapters/dynamo_billing.py)."""
    hour = start_s - start_s % 3600
    item = ddb.get_item(TableName="t-billing", Key={"pk": {"S": f"U#{customer}"},
                                                    "sk": {"S": f"{hour:012d}|{meter}#{group}"}})["Item"]
    return item, item["c"]["M"][str((start_s - hour) // 900)]["M"]
