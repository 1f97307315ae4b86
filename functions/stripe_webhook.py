"""Lambda entry point: ``POST /v1/webhooks/stripe`` (its own function and route; no API key — the
Stripe signature is the authentication). The body is taken exactly as received (API Gateway's
base64 decoded to the original bytes, never re-serialized) and handed with the headers to
``WebhookService.receive``: bad signature → 400 and nothing changes; an event meterbill does not
act on → 200; a duplicate → 200, applied once."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Metrics

from meterbill.api.errors import from_exception
from meterbill.api.raw import raw_body
from meterbill.bootstrap import default_container, lambda_logger

logger = lambda_logger()
metrics = Metrics()


def process(event: dict[str, Any], webhooks: Any, integration: str = "stripe") -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        result = webhooks.receive(integration, raw_body(event), headers)
    except Exception as exc:  # noqa: BLE001 - the one error mapping decides (400 signature, 404, 5xx)
        resp = from_exception(exc)
        return {"statusCode": resp.status_code, "headers": {"Content-Type": "application/json"}, "body": resp.body}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(result)}


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process(event, default_container().webhooks)
