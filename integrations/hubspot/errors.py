"""HubSpot errors → Retryable / Permanent / Unknown.

hubspot-api-client generates one ``ApiException`` class per API package (objects, associations…),
all with ``status``, ``reason``, ``headers`` and ``body``; a timeout or a dropped connection is
urllib3's own error. HubSpot has no idempotency header: creates go through upserts by a unique
property or are looked up first, so a failed create (``CreateFailed``) is ``Unknown`` on a timeout
or 5xx and the next attempt finds what it made.
"""

from __future__ import annotations

from typing import Any

import urllib3

from meterbill.integration.contract import Classification, Unknown, classify_own, classify_status, no_answer
from meterbill.integration.errors import retry_after_seconds, unwrap


def is_api_error(exc: BaseException) -> bool:
    """An ``ApiException`` of any hubspot-api-client package (they share no base class)."""
    return type(exc).__module__.startswith("hubspot.") and isinstance(getattr(exc, "status", None), int)


def _header(exc: Any, name: str) -> str | None:
    headers = getattr(exc, "headers", None) or {}
    return next((str(v) for k, v in headers.items() if str(k).lower() == name), None)


def _describe(exc: Any) -> str:
    message = ""
    body = getattr(exc, "body", None)
    if body:
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        message = " — " + text[:300]
    return f"HubSpot HTTP {exc.status} {exc.reason or ''}".rstrip() + message


def classify(exc: BaseException) -> Classification:
    exc, created = unwrap(exc)
    own = classify_own(exc)
    if own is not None:
        return own
    if isinstance(exc, urllib3.exceptions.HTTPError):       # timeout, reset, refused
        return no_answer("HubSpot", exc, created=created)
    if not is_api_error(exc):
        return Unknown(f"unexpected {type(exc).__name__}: {exc}")
    return classify_status("HubSpot", getattr(exc, "status"), _describe(exc), created=created,
                           retry_after=retry_after_seconds(_header(exc, "retry-after")))
