"""Stripe errors → Retryable / Permanent / Unknown.

The SDK retries (``max_network_retries``) connection errors, 409 and 5xx in-process with the same
idempotency key, but never a plain 429; whatever still fails reaches the dispatcher, which retries
through its queue. Whether a call *created* something decides between Retryable and Unknown, and
only the caller knows that: a failed create is raised as :class:`CreateFailed` (its cause is the
SDK error), anything else as the SDK raised it.
"""

from __future__ import annotations

from collections.abc import Mapping

import stripe

from meterbill.integration.contract import Classification, Permanent, Retryable, Unknown
from meterbill.integration.errors import ConfigError, InvalidWebhook, PermanentFailure


class CreateFailed(Exception):
    """A create call (customer, invoice, invoice item, credit note) failed; ``__cause__`` is the
    SDK error. A timeout or 5xx here may have created the object: ``Unknown``."""

    def __init__(self, what: str, cause: stripe.StripeError) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"creating the Stripe {what} failed: {_describe(cause)}")


def _describe(exc: stripe.StripeError) -> str:
    code = f" {exc.code}" if exc.code else ""
    return f"{type(exc).__name__} (HTTP {exc.http_status}{code}): {exc.user_message or ''}".strip()


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def retry_after(exc: stripe.StripeError) -> float | None:
    """Seconds from the response's ``Retry-After`` (a number of seconds), if it sent one."""
    value = header(exc.headers, "retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86_400 else None


def classify(exc: BaseException) -> Classification:
    created = isinstance(exc, CreateFailed)
    if isinstance(exc, CreateFailed):
        exc = exc.cause
    if isinstance(exc, PermanentFailure):
        return Permanent(f"{exc.flag}: {exc}")
    if isinstance(exc, (ConfigError, InvalidWebhook)):
        return Permanent(str(exc))
    if not isinstance(exc, stripe.StripeError):
        return Unknown(f"unexpected {type(exc).__name__}: {exc}")
    what = _describe(exc)
    status = exc.http_status
    if isinstance(exc, stripe.RateLimitError) or status == 429:      # incl. lock_timeout
        return Retryable(what, retry_after(exc))
    if isinstance(exc, stripe.IdempotencyError):
        return Permanent(f"the same idempotency key was sent with other parameters: {what}")
    if isinstance(exc, stripe.AuthenticationError) or status == 401:
        return Permanent(f"configuration: the Stripe API key was refused: {what}")
    if isinstance(exc, stripe.PermissionError) or status == 403:
        return Permanent(f"configuration: the Stripe API key may not do this: {what}")
    if isinstance(exc, stripe.APIConnectionError):
        return Unknown(what) if created else Retryable(what)
    if status is not None and status >= 500:
        return Unknown(what) if created else Retryable(what, retry_after(exc))
    if status == 409:                       # a concurrent request with the same key: nothing saved
        return Retryable(what, retry_after(exc))
    if status == 404:
        return Permanent(f"configuration: not found in this Stripe account: {what}")
    if status is not None and 400 <= status < 500:
        return Permanent(what)
    return Unknown(what)
