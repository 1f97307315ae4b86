"""Xero errors → Retryable / Permanent / Unknown.

xero-python raises ``RateLimitException`` (429, ``Retry-After`` and ``X-Rate-Limit-Problem``),
``AccountingBadRequestException`` (400, Xero's validation errors), ``NotFoundException`` and
``ApiException``/``HTTPStatusException`` for the rest (``status``); a timeout or a dropped
connection is urllib3's own error. Whether a call *created* something decides between Retryable
and Unknown: the module raises ``CreateFailed`` around its creates (PUT).
"""

from __future__ import annotations

import json

import urllib3
from xero_python.exceptions import ApiException, OAuth2Error

from meterbill.integration.contract import Classification, Permanent, Unknown, classify_own, classify_status, no_answer
from meterbill.integration.errors import retry_after_seconds, unwrap


def _header(exc: ApiException, name: str) -> str | None:
    try:
        headers = exc.headers or {}
    except AttributeError:
        return None
    return next((str(v) for k, v in headers.items() if str(k).lower() == name), None)


def _validation_messages(exc: ApiException) -> list[str]:
    """Xero's own validation messages from a 400 body (``Elements[].ValidationErrors[].Message``)."""
    try:
        body = json.loads(exc.body or b"{}")
    except (ValueError, TypeError):
        return []
    if not isinstance(body, dict):
        return []
    found = [str(v.get("Message")) for el in body.get("Elements") or [] if isinstance(el, dict)
             for v in el.get("ValidationErrors") or [] if isinstance(v, dict) and v.get("Message")]
    return found or ([str(body["Message"])] if body.get("Message") else [])


def _describe(exc: ApiException) -> str:
    problem = _header(exc, "x-rate-limit-problem")
    text = f"{type(exc).__name__} (HTTP {exc.status}): {exc.reason or ''}".strip()
    messages = _validation_messages(exc) if exc.status == 400 else []
    if messages:
        text += " — " + "; ".join(messages)[:500]
    return f"{text}; rate limit: {problem}" if problem else text


def classify(exc: BaseException) -> Classification:
    exc, created = unwrap(exc)
    own = classify_own(exc)
    if own is not None:
        return own
    if isinstance(exc, OAuth2Error):
        return Permanent(f"configuration: Xero refused the OAuth2 credentials: {type(exc).__name__}")
    if isinstance(exc, urllib3.exceptions.HTTPError):       # timeout, reset, refused
        return no_answer("Xero", exc, created=created)
    if not isinstance(exc, ApiException):
        return Unknown(f"unexpected {type(exc).__name__}: {exc}")
    return classify_status("Xero", exc.status or 0, _describe(exc), created=created,
                           retry_after=retry_after_seconds(_header(exc, "retry-after")))
