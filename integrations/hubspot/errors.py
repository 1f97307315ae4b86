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

from meterbill.integration.contract import Classification, Permanent, Retryable, Unknown
from meterbill.integration.errors import ConfigError, CreateFailed, PermanentFailure, retry_after_seconds


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
    created = isinstance(exc, CreateFailed)
    if isinstance(exc, CreateFailed):
        exc = exc.cause
    if isinstance(exc, PermanentFailure):
        return Permanent(f"{exc.flag}: {exc}")
    if isinstance(exc, ConfigError):
        return Permanent(str(exc))
    if isinstance(exc, urllib3.exceptions.HTTPError):       # timeout, reset, refused
        what = f"{type(exc).__name__}: the HubSpot call did not complete"
        return Unknown(what) if created else Retryable(what)
    if not is_api_error(exc):
        return Unknown(f"unexpected {type(exc).__name__}: {exc}")
    status: int = getattr(exc, "status")
    what = _describe(exc)
    if status == 429:
        return Retryable(what, retry_after_seconds(_header(exc, "retry-after")))
    if status in (401, 403):
        return Permanent(f"configuration: HubSpot refused the access token or its scopes: {what}")
    if status >= 500 or status == 0:
        return Unknown(what) if created else Retryable(what, retry_after_seconds(_header(exc, "retry-after")))
    if 400 <= status < 500:
        return Permanent(what)
    return Unknown(what)
