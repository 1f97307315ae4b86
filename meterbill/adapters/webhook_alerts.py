"""Alerts POSTed as JSON to one configured webhook URL (``METERBILL_ALERT_WEBHOOK_URL``), until the
outbound-webhook service (integrations work) carries them: ``ports.AlertSink``.

urllib3 (already shipped with botocore) does the HTTP: a bounded timeout, retries on connection
errors and 429/5xx with backoff. The ``Idempotency-Key`` header is the alert's dedupe key, so a
receiver can drop an alert sent twice (an alert is sent at least once)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import urllib3


class AlertNotDelivered(RuntimeError):
    """The webhook did not take the alert (refused, unreachable, timed out): it stays pending."""


class WebhookAlertSink:
    def __init__(self, url: str, timeout_s: float = 5.0, http: urllib3.PoolManager | None = None) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("METERBILL_ALERT_WEBHOOK_URL must be an http(s) URL")
        self._url = url
        self._timeout = urllib3.Timeout(connect=min(timeout_s, 3.0), read=timeout_s)
        self._http = http or urllib3.PoolManager(retries=urllib3.Retry(
            total=2, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=None,
            raise_on_status=False))

    def emit(self, event_type: str, payload: Mapping[str, Any], dedupe_key: str) -> None:
        body = json.dumps({"type": event_type, "id": dedupe_key, "data": dict(payload)}).encode()
        try:
            resp = self._http.request("POST", self._url, body=body, timeout=self._timeout,
                                      headers={"Content-Type": "application/json", "Idempotency-Key": dedupe_key,
                                               "User-Agent": "meterbill-alerts"})
        except urllib3.exceptions.HTTPError as exc:
            raise AlertNotDelivered(f"alert webhook unreachable: {type(exc).__name__}") from exc
        if not 200 <= resp.status < 300:
            raise AlertNotDelivered(f"alert webhook answered {resp.status}")
