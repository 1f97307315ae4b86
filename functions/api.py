"""Lambda entry point for the HTTP API (API Gateway HTTP API, payload v2)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.api.app import build_app
from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()
app = build_app(APIGatewayHttpResolver, default_container)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric("ApiRequests", MetricUnit.Count, 1)
    # resolve, not resolve_async: the whole middleware chain runs on this thread. The async path
    # would run each synchronous middleware on an executor thread waiting for another (issue 12).
    return app.resolve(event, context)
