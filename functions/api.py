"""Lambda entry point for the HTTP API (API Gateway HTTP API, payload v2): every route but
POST /v1/events, which API Gateway sends to the ingest function (functions/ingest.py)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from meterbill.api.app import build_app
from meterbill.api.lambda_entry import http_handler
from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
app = build_app(APIGatewayHttpResolver, default_container)
handler = http_handler(app, logger)
