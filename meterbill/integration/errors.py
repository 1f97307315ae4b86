"""Errors of the integration layer. Messages never contain a secret (settings hide their values)."""

from __future__ import annotations

from collections.abc import Sequence


class IntegrationError(Exception):
    """Base of every error the integration layer raises itself."""


class PluginError(IntegrationError):
    """A plugin does not follow the contract (found when it registers) or is not registered."""


class ConfigError(IntegrationError):
    """A plugin's settings are missing or invalid; ``problems`` names each field."""

    def __init__(self, vendor: str, problems: Sequence[object]) -> None:
        self.vendor = vendor
        self.problems = tuple(str(p) for p in problems)
        super().__init__(f"{vendor} settings: " + "; ".join(self.problems))


class InvalidWebhook(IntegrationError):
    """A webhook that is not verifiably from the vendor (bad or old signature, unreadable body):
    answered 400, nothing changes."""


class PermanentFailure(IntegrationError):
    """Raised by a plugin when retrying cannot help and the vendor raised nothing (e.g. the
    vendor's totals differ from meterbill's before finalize); every ``classify`` maps it to
    ``Permanent``. ``flag`` names the kind for alerts (``totals_mismatch``, ``invalid_invoice``)."""

    def __init__(self, flag: str, message: str) -> None:
        self.flag = flag
        super().__init__(message)


class CreateFailed(IntegrationError):
    """A call that creates something at the vendor failed; ``cause`` (also ``__cause__``) is the
    SDK's error. A timeout or 5xx here may have created the object, so ``classify`` answers
    ``Unknown`` (look up before creating again) where the same error on a read is ``Retryable``.
    Vendor modules raise it around their creates (the Stripe module keeps its own, older one)."""

    def __init__(self, vendor: str, what: str, cause: BaseException) -> None:
        self.vendor = vendor
        self.what = what
        self.cause = cause
        super().__init__(f"creating the {vendor} {what} failed: {type(cause).__name__}")


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header given in seconds (``"30"``, ``"1.5"``), or None when absent, not a
    number, negative or longer than a day (an HTTP date is not used by these vendors)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86_400 else None


def unwrap(exc: BaseException) -> tuple[BaseException, bool]:
    """(the vendor's error, whether the failed call was a create): ``CreateFailed`` unwrapped."""
    if isinstance(exc, CreateFailed):
        return exc.cause, True
    return exc, False
