"""Lambda entry point for POST /v1/events alone (API Gateway routes that path here): the lean
ingest application, answering exactly as the routed API does, with a cold start that loads only
what ingest needs (docs/performance.md, issue 9)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from meterbill.api.events import build_ingest_app
from meterbill.api.lambda_entry import http_handler
from meterbill.bootstrap import ingest_container, lambda_logger

logger = lambda_logger()
app = build_ingest_app(APIGatewayHttpResolver, ingest_container)
handler = http_handler(app, logger)
