"""The Lambda handler around an HTTP application (API Gateway HTTP API, payload v2): the routed
API (``functions/api.py``) and the lean ingest function (``functions/ingest.py``) alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def http_handler(app: Any, logger: Logger) -> Handler:
    metrics = Metrics()

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_metric("ApiRequests", MetricUnit.Count, 1)
        # resolve, not resolve_async: the whole middleware chain runs on this thread. The async path
        # would run each synchronous middleware on an executor thread waiting for another (issue 12).
        return app.resolve(event, context)

    return handler
