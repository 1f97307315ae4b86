"""Composition root: the one place where real adapters are built and wired into services."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import boto3
from botocore.config import Config

from meterbill.adapters.dynamo_billing import DynamoBillingStore
from meterbill.adapters.dynamo_codec import install_pass_through
from meterbill.adapters.dynamo_events import DynamoEventStore, decode_stream
from meterbill.adapters.dynamo_stream import StreamWatermark
from meterbill.config import Settings
from meterbill.ports import Clock, UsageWatermark
from meterbill.rendering import InvoiceRenderer
from meterbill.services.accounts import AccountService
from meterbill.services.aggregation import AggregationService
from meterbill.services.billing import BillingService
from meterbill.services.catalog import CatalogService
from meterbill.services.credit_notes import CreditNoteService
from meterbill.services.ingest import IngestService
from meterbill.services.keys import KeyService
from meterbill.services.usage import UsageService


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Container:
    settings: Settings
    clock: Clock
    events_store: DynamoEventStore
    billing_store: DynamoBillingStore
    catalog: CatalogService
    ingest: IngestService
    aggregation: AggregationService
    billing: BillingService
    accounts: AccountService
    credit_notes: CreditNoteService
    usage: UsageService
    keys: KeyService
    renderer: InvoiceRenderer
    watermark: UsageWatermark


def dynamodb_client(settings: Settings) -> Any:
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=10,
                    max_pool_connections=16, tcp_keepalive=True)
    client = boto3.session.Session().client("dynamodb", region_name=settings.region,
                                            endpoint_url=settings.dynamodb_endpoint, config=config)
    return install_pass_through(client, put_tables=(settings.events_table,))  # event writes: the hot path


def streams_client(settings: Settings) -> Any:
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=10)
    return boto3.session.Session().client("dynamodbstreams", region_name=settings.region,
                                          endpoint_url=settings.dynamodb_endpoint, config=config)


def bootstrap(settings: Settings | None = None, *, client: Any = None, clock: Clock | None = None,
              cache_ttl_s: float = 10.0) -> Container:
    settings = settings or Settings.from_env()
    client = client or dynamodb_client(settings)
    clock = clock or utc_now
    watermark = StreamWatermark(streams_client(settings), client, settings.events_table, settings.billing_table,
                                settle_s=settings.stream_settle_s, max_wait_s=settings.usage_wait_s)
    events = DynamoEventStore(client, settings.events_table)
    store = DynamoBillingStore(client, settings.billing_table)
    catalog = CatalogService(store, clock, cache_ttl_s=cache_ttl_s)
    credit_notes = CreditNoteService(store, clock, settings.credit_note_prefix)
    return Container(
        settings=settings, clock=clock, events_store=events, billing_store=store, catalog=catalog,
        ingest=IngestService(events, catalog, clock, store),
        aggregation=AggregationService(store, catalog, clock, decode_stream, watermark),
        billing=BillingService(store, catalog, clock, credit_notes, settings.invoice_prefix, settings.grace_hours,
                               settings.seller_country, watermark),
        accounts=AccountService(store, catalog, clock), credit_notes=credit_notes,
        usage=UsageService(store, catalog, clock),
        keys=KeyService(store, clock),
        renderer=InvoiceRenderer(settings), watermark=watermark,
    )


@functools.cache
def default_container() -> Container:
    """Built once per cold start (Lambda) or process (local server)."""
    return bootstrap()
