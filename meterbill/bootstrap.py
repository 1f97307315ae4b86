"""Composition root: the one place where real adapters are built and wired into services.

Only what the ingest path needs is imported at the top: the ingest function's cold start
(``ingest_container``, docs/performance.md, issue 9). Everything else is imported when the
full container is built (``bootstrap``)."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter, set_context_keys
from botocore.config import Config

from meterbill.adapters import dynamo_events
from meterbill.adapters.dynamo_billing import DynamoBillingStore
from meterbill.adapters.dynamo_codec import install_pass_through
from meterbill.adapters.dynamo_events import DynamoEventStore
from meterbill.config import Settings
from meterbill.ports import Clock
from meterbill.services import aggregation
from meterbill.services.catalog import CatalogService
from meterbill.services.ingest import IngestService
from meterbill.services.keys import KeyService

if TYPE_CHECKING:
    from meterbill.ports import AlertSink, UsageWatermark
    from meterbill.rendering import InvoiceRenderer
    from meterbill.ports import AlertSink
    from meterbill.services.accounts import AccountService
    from meterbill.services.aggregation import AggregationService
    from meterbill.services.anomalies import AnomalyService
    from meterbill.services.billing import BillingService
    from meterbill.services.billing_runs import BillingRunService
    from meterbill.services.credit_notes import CreditNoteService
    from meterbill.services.privacy import PrivacyService
    from meterbill.services.rebuild import RebuildService
    from meterbill.services.sync import EVENT_SINK, SyncService
    from meterbill.services.usage import UsageService
    from meterbill.services.webhooks import WebhookService
    from meterbill.services.webhook_delivery import WebhookDelivery
    from meterbill.services.webhook_endpoints import WebhookEndpoints
    from meterbill.services.reports import ReportService
    from meterbill.services.reconciliation import ReconciliationService
    from meterbill.services.budgets import BudgetService
    from meterbill.services.portal import PortalService
    from meterbill.services.dunning import DunningService
    from meterbill.services.payments import PaymentService


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class IngestContainer:
    """What POST /v1/events needs: the API key check and the ingest service (the lean ingest
    function builds only this: one DynamoDB client, no streams client, no renderer)."""

    settings: Settings
    clock: Clock
    events_store: DynamoEventStore
    billing_store: DynamoBillingStore
    catalog: CatalogService
    ingest: IngestService
    keys: KeyService


@dataclass(frozen=True)
class Container(IngestContainer):
    aggregation: AggregationService
    billing: BillingService
    billing_runs: BillingRunService
    accounts: AccountService
    credit_notes: CreditNoteService
    usage: UsageService
    renderer: InvoiceRenderer
    watermark: UsageWatermark
    privacy: PrivacyService
    rebuild: RebuildService
    sync: SyncService
    webhooks: WebhookService
    anomalies: AnomalyService
    hooks: WebhookEndpoints            # outbound webhook endpoints and emit(event_type, payload, dedupe_key)
    hook_delivery: WebhookDelivery     # the webhooks queue's dispatcher
    reports: ReportService
    reconciliation: ReconciliationService
    budgets: BudgetService
    portal: PortalService
    payments: PaymentService
    dunning: DunningService


# One client serves every thread of a process, and urllib3 keeps at most `max_pool_connections`
# connections: a thread that finds them all in use opens another and, returning it to a full pool,
# drops it with "Connection pool is full, discarding connection" (a new TCP connection next time).
# A Lambda instance runs one invocation at a time (ingest: WRITERS concurrent PutItems; the
# aggregator: its bucket writers); `meterbill run` runs the API, the aggregator and the close timer
# in one process, the API on LOCAL_HTTP_WORKERS threads (meterbill/api/asgi.py WORKERS; a test
# keeps the two equal). Connections are opened only when needed, so sizing the pool for the local
# stack costs Lambda nothing.
LOCAL_HTTP_WORKERS = 16
POOL_CONNECTIONS = LOCAL_HTTP_WORKERS + dynamo_events.WRITERS + aggregation.WRITERS + 4  # + poller, timer, health


def dynamodb_client(settings: Settings) -> Any:
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=10,
                    max_pool_connections=POOL_CONNECTIONS, tcp_keepalive=True)
    client = boto3.session.Session().client("dynamodb", region_name=settings.region,
                                            endpoint_url=settings.dynamodb_endpoint, config=config)
    return install_pass_through(client, put_tables=(settings.events_table,))  # event writes: the hot path


def streams_client(settings: Settings) -> Any:
    # the usage watermark: read by billing runs and by every (public) health check, from any HTTP thread
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=10,
                    max_pool_connections=LOCAL_HTTP_WORKERS + 4)
    return boto3.session.Session().client("dynamodbstreams", region_name=settings.region,
                                          endpoint_url=settings.dynamodb_endpoint, config=config)


def sqs_client(settings: Settings) -> Any:
    # the close queue: on AWS SQS; locally the same moto server as DynamoDB
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=30,
                    max_pool_connections=LOCAL_HTTP_WORKERS + 4)
    return boto3.session.Session().client("sqs", region_name=settings.region,
                                          endpoint_url=settings.dynamodb_endpoint, config=config)


def reconcile_launcher(settings: Settings) -> Any:
    """POST /v1/reconciliations hands its request to the reconcile function (asynchronous invoke),
    or, without one configured (the local stack, tests), runs it in-process (None)."""
    if not settings.reconcile_function:
        return None
    import json

    client = boto3.session.Session().client("lambda", region_name=settings.region)
    return lambda recon_id: client.invoke(FunctionName=settings.reconcile_function, InvocationType="Event",
                                          Payload=json.dumps({"reconciliation": recon_id}).encode())


def integration_settings(settings: Settings) -> Any:
    """vendor -> IntegrationSettings, from where this deployment keeps them."""
    from meterbill.adapters.secrets import ParameterStoreSettings, SecretsManagerSettings
    from meterbill.integration.settings import settings_from_env

    if settings.integration_settings == "ssm":
        ssm = boto3.session.Session().client("ssm", region_name=settings.region)
        return ParameterStoreSettings(ssm).load
    if settings.integration_settings == "secretsmanager":
        sm = boto3.session.Session().client("secretsmanager", region_name=settings.region)
        return SecretsManagerSettings(sm).load
    return lambda vendor: settings_from_env(vendor, os.environ)


def plugin_factory(load: Any, plugins: Mapping[str, Any] | None = None) -> Any:
    """name -> the built, validated plugin (once per process; its settings read once). ``plugins``
    gives ready ones (tests' fakes)."""
    from meterbill.integration.registry import REGISTRY

    built: dict[str, Any] = dict(plugins or {})

    def plugin(name: str) -> Any:
        if name not in built:
            if name not in REGISTRY.names():   # registering the same class again is a no-op
                REGISTRY.load_entry_points()
            settings = load(name)
            built[name] = REGISTRY.build(name, settings)
        return built[name]
    return plugin


def ingest_bootstrap(settings: Settings | None = None, *, client: Any = None, clock: Clock | None = None,
                     cache_ttl_s: float = 10.0) -> IngestContainer:
    settings = settings or Settings.from_env()
    client = client or dynamodb_client(settings)
    clock = clock or utc_now
    events = DynamoEventStore(client, settings.events_table)
    store = DynamoBillingStore(client, settings.billing_table)
    catalog = CatalogService(store, clock, cache_ttl_s=cache_ttl_s)
    return IngestContainer(settings=settings, clock=clock, events_store=events, billing_store=store, catalog=catalog,
                           ingest=IngestService(events, catalog, clock, store), keys=KeyService(store, clock))


def bootstrap(settings: Settings | None = None, *, client: Any = None, clock: Clock | None = None,
              cache_ttl_s: float = 10.0, plugins: Mapping[str, Any] | None = None,
              alerts: AlertSink | None = None) -> Container:
    from meterbill.adapters.dynamo_budgets import DynamoBudgetStore, LogAlertSink
    from meterbill.adapters.dynamo_events import EventScanner, decode_stream
    from meterbill.adapters.dynamo_stream import StreamWatermark
    from meterbill.adapters.sqs_queue import SqsWorkQueue
    from meterbill.rendering import InvoiceRenderer
    from meterbill.services.accounts import AccountService
    from meterbill.services.anomalies import AnomalyService
    from meterbill.services.billing import BillingService
    from meterbill.services.billing_runs import BillingRunService
    from meterbill.services.credit_notes import CreditNoteService
    from meterbill.services.privacy import PrivacyService
    from meterbill.config import sync_queue_env
    from meterbill.services.rebuild import RebuildService
    from meterbill.services.sync import EVENT_SINK, SyncService
    from meterbill.services.usage import UsageService
    from meterbill.services.webhooks import WebhookService
    from meterbill.services.webhook_delivery import WebhookDelivery
    from meterbill.services.webhook_endpoints import WebhookEndpoints
    from meterbill.adapters.dynamo_reports import DynamoReportReader
    from meterbill.services.reports import ReportService
    from meterbill.adapters.dynamo_reconciliations import ReconciliationItems
    from meterbill.services.reconciliation import ReconciliationService
    from meterbill.services.budgets import BudgetService
    from meterbill.services.portal import PortalService
    from meterbill.services.dunning import DunningService
    from meterbill.services.payments import PaymentService

    settings = settings or Settings.from_env()
    client = client or dynamodb_client(settings)
    base = ingest_bootstrap(settings, client=client, clock=clock, cache_ttl_s=cache_ttl_s)
    clock, store, catalog = base.clock, base.billing_store, base.catalog
    watermark = StreamWatermark(streams_client(settings), client, settings.events_table, settings.billing_table,
                                settle_s=settings.stream_settle_s, max_wait_s=settings.usage_wait_s)
    credit_notes = CreditNoteService(store, clock, settings.credit_note_prefix)
    billing = BillingService(store, catalog, clock, credit_notes, settings.invoice_prefix, settings.grace_hours,
                             settings.seller_country, watermark, collection_method=settings.collection_method)
    queue = SqsWorkQueue(sqs_client(settings), settings.close_queue_url or "")
    runs = BillingRunService(store, billing, queue, clock, watermark, wait_retry_s=int(settings.close_wait_retry_s),
                             max_wait_attempts=settings.close_wait_attempts,
                             max_receives=settings.close_max_receives)
    sqs = sqs_client(settings)
    sync_queues = {name: SqsWorkQueue(sqs, url, env_name=sync_queue_env(name)) for name, url in settings.sync_queue_urls}
    plugin = plugin_factory(integration_settings(settings), plugins)
    sync = SyncService(store, clock, settings.integrations, plugin, sync_queues)
    hooks = WebhookEndpoints(store, clock)
    alerts = alerts or alert_sink(settings, hooks)
    budgets = BudgetService(store, DynamoBudgetStore(client, settings.billing_table), billing, clock,
                            alerts or LogAlertSink())
    accounts = AccountService(store, catalog, clock)
    usage = UsageService(store, catalog, clock)
    payments = PaymentService(store, clock)
    return Container(
        **vars(base),
        aggregation=aggregation.AggregationService(store, catalog, clock, decode_stream, watermark,
                                                   on_usage=budgets.refresh),
        billing=billing, billing_runs=runs,
        accounts=accounts, credit_notes=credit_notes,
        usage=usage,
        renderer=InvoiceRenderer(settings), watermark=watermark,
        privacy=PrivacyService(store, EventScanner(client, settings.events_table), catalog, clock, watermark),
        rebuild=RebuildService(store, EventScanner(client, settings.events_table), catalog, clock),
        sync=sync, webhooks=WebhookService(store, clock, settings.integrations, plugin, payments),
        payments=payments, dunning=DunningService(store, clock, settings.dunning_ladder),
        anomalies=AnomalyService(store, catalog, clock, alerts),
        hooks=hooks,
        hook_delivery=WebhookDelivery(store, clock, lambda: plugin(EVENT_SINK),
                                      sync_queues.get(EVENT_SINK) or SqsWorkQueue(sqs, "", env_name=sync_queue_env(EVENT_SINK))),
        reports=ReportService(functools.partial(DynamoReportReader, client, settings.billing_table), clock),
        reconciliation=ReconciliationService(store, ReconciliationItems(client, settings.billing_table),
                                             EventScanner(client, settings.events_table), catalog, billing, clock,
                                             settings.integrations, watermark, reconcile_launcher(settings)),
        budgets=budgets,
        portal=PortalService(store, catalog, billing, usage, accounts, budgets, clock, portal_secret(settings),
                             settings.portal_base_url),
    )


def alert_sink(settings: Settings, hooks: AlertSink) -> AlertSink | None:
    """Where alerts (anomalies, budget thresholds) go: the outbound webhooks (``hooks.emit``: signed,
    retried, listed per endpoint) when the ``webhooks`` integration is enabled; else a configured URL
    (METERBILL_ALERT_WEBHOOK_URL); else none (anomalies are still stored and listed, budget alerts
    logged)."""
    if "webhooks" in settings.integrations:
        return hooks
    if not settings.alert_webhook_url:
        return None
    from meterbill.adapters.webhook_alerts import WebhookAlertSink

    return WebhookAlertSink(settings.alert_webhook_url, settings.alert_timeout_s)


def portal_secret(settings: Settings) -> bytes | None:
    """The portal's HMAC key: the setting itself, or the SSM SecureString it names (AWS)."""
    if settings.portal_secret:
        return settings.portal_secret.encode("utf-8")
    if settings.portal_secret_parameter:
        ssm = boto3.session.Session().client("ssm", region_name=settings.region)
        value = ssm.get_parameter(Name=settings.portal_secret_parameter, WithDecryption=True)["Parameter"]["Value"]
        return str(value).encode("utf-8")
    return None


@functools.cache
def default_container() -> Container:
    """Built once per cold start (Lambda) or process (local server)."""
    return bootstrap()


@functools.cache
def ingest_container() -> IngestContainer:
    """The ingest function's: built once per cold start."""
    return ingest_bootstrap()


# -- logging --------------------------------------------------------------------------------------
# What Powertools' inject_lambda_context appends for the invocation. Kept per thread (a context
# variable) instead of on the formatter every Logger of the service shares: `meterbill run` runs
# the API, the aggregator and the close timer in one process, and a key appended by one of them
# labelled the others' lines ("unhandled error" of an API request tagged function_name
# "aggregator"). On Lambda one invocation runs at a time; lines logged by its worker threads
# (bucket writers) carry no function name, which the log group names anyway.
INVOCATION_KEYS = frozenset({"function_name", "function_memory_size", "function_arn", "function_request_id",
                             "cold_start", "correlation_id"})
MAX_FIELD_CHARS = 1_000        # a message, an extra field
MAX_LINE_CHARS = 240           # one line of a traceback
MAX_TRACEBACK_CHARS = 4_000    # the innermost frames and the exception are kept
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def bounded_traceback(text: str) -> str:
    """A traceback in at most about MAX_TRACEBACK_CHARS: Python 3.11's ^^^ marker lines dropped,
    every line cut to MAX_LINE_CHARS (an exception message may hold a whole request value), and
    the outermost frames left out when still too long."""
    lines = [_cut(line, MAX_LINE_CHARS) for line in text.splitlines() if not _CARETS.match(line)]
    if sum(len(line) + 1 for line in lines) <= MAX_TRACEBACK_CHARS:
        return "\n".join(lines)
    head, kept, size = lines[:1], [], len(lines[0]) + 40
    for line in reversed(lines[1:]):
        if size + len(line) + 1 > MAX_TRACEBACK_CHARS:
            break
        kept.append(line)
        size += len(line) + 1
    left_out = len(lines) - 1 - len(kept)
    return "\n".join([*head, f"  … {left_out} lines of outer frames left out", *reversed(kept)])


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return _cut(value, MAX_FIELD_CHARS)
    if isinstance(value, Mapping):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


class BoundedFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON log lines, each bounded in size and labelled by its own invocation.

    One line per log call as before; a traceback is kept once (``exception``; no ``stack_trace``
    repeating its frames and message) and bounded (``bounded_traceback``), every other string
    field cut at MAX_FIELD_CHARS."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("serialize_stacktrace", False)
        super().__init__(**kwargs)

    def append_keys(self, **additional_keys: Any) -> None:
        mine = {k: v for k, v in additional_keys.items() if k in INVOCATION_KEYS}
        if mine:
            self.thread_safe_append_keys(**mine)
        super().append_keys(**{k: v for k, v in additional_keys.items() if k not in INVOCATION_KEYS})

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging.Formatter's name
        return bounded_traceback(super().formatException(ei))

    def serialize(self, log: dict[str, Any]) -> str:
        return super().serialize({k: v if k == "exception" else _bounded(v) for k, v in log.items()})


def lambda_logger(service: str | None = None, handler: logging.Handler | None = None) -> Logger:
    """The Powertools Logger of a Lambda entry point (functions/*.py). Every Logger of one service
    shares the first one's handler and formatter; module loggers under ``meterbill`` reach it too
    when the service is named ``meterbill`` (template.yaml, and the local stack)."""
    return Logger(service=service, logger_formatter=BoundedFormatter(), logger_handler=handler)


def partial_batch(event: dict[str, Any], context: Any, record_handler: Any, stream: bool = False) -> dict[str, Any]:
    """Powertools' batch processing with ``batchItemFailures`` for an SQS batch (or a DynamoDB
    stream batch): only the records that raised come back. A batch whose every record failed is
    reported as such, not raised (the same redelivery, without an invocation error)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    kind = EventType.DynamoDBStreams if stream else EventType.SQS
    return process_partial_response(event=event, record_handler=record_handler, context=context,
                                    processor=BatchProcessor(event_type=kind, raise_on_entire_batch_failure=False))


def label_thread(function_name: str) -> None:
    """Log lines of this thread, and of the threads that copy its context, name ``function_name``
    (the local stack's HTTP server: "api")."""
    set_context_keys(function_name=function_name)


def scheduled_time(event: Mapping[str, Any] | None) -> datetime | None:
    """The tick's time EventBridge Scheduler passes a scheduled function (``<aws.scheduler.scheduled-time>``
    as ``scheduled_time``), or None (invoked by hand)."""
    raw = (event or {}).get("scheduled_time")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) and raw else None

