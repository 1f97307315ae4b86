"""The vendor-neutral classification helpers the HubSpot and Xero modules share
(``meterbill.integration.contract``): HTTP status → Retryable / Permanent / Unknown, no answer,
the layer's own errors, redaction; ``errors.retry_after_seconds`` and ``unwrap``."""

from __future__ import annotations

import pytest

from meterbill.integration.contract import (
    Permanent,
    Retryable,
    Unknown,
    classify_own,
    classify_status,
    no_answer,
    redacted,
)
from meterbill.integration.errors import ConfigError, CreateFailed, PermanentFailure, retry_after_seconds, unwrap
from meterbill.integration.settings import IntegrationSettings


@pytest.mark.parametrize(("status", "created", "expected"), [
    (429, False, Retryable), (429, True, Retryable),
    (500, False, Retryable), (503, True, Unknown), (0, True, Unknown), (0, False, Retryable),
    (400, True, Permanent), (404, False, Permanent), (409, False, Permanent), (422, True, Permanent),
    (401, False, Permanent), (403, True, Permanent), (302, False, Unknown),
])
def test_status_classes(status: int, created: bool, expected: type) -> None:
    found = classify_status("Vendor", status, "what", created=created, retry_after=7.0)
    assert type(found) is expected
    if status == 429:
        assert found == Retryable("what", 7.0)
    if status in (401, 403):
        assert found.reason.startswith("configuration: Vendor refused")


def test_no_answer_depends_on_whether_the_call_created() -> None:
    assert isinstance(no_answer("Xero", TimeoutError(), created=True), Unknown)
    assert isinstance(no_answer("Xero", TimeoutError(), created=False), Retryable)


def test_own_errors_and_unwrap() -> None:
    assert classify_own(PermanentFailure("totals_mismatch", "x")) == Permanent("totals_mismatch: x")
    assert isinstance(classify_own(ConfigError("xero", ["tenant_id: is required"])), Permanent)
    assert classify_own(ValueError()) is None
    cause = ValueError("boom")
    assert unwrap(CreateFailed("xero", "invoice", cause)) == (cause, True)
    assert unwrap(cause) == (cause, False)


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), ("1.5", 1.5), (None, None), ("soon", None),
                                                ("-1", None), ("90000", None)])
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_redacted_masks_secrets_in_every_kind() -> None:
    settings = IntegrationSettings("xero", {"client_secret": "s3cr3t-value", "tenant_id": "t"})
    for found in (Retryable("x s3cr3t-value", 2.0), Permanent("s3cr3t-value"), Unknown("a s3cr3t-value b")):
        masked = redacted(found, settings)
        assert type(masked) is type(found) and "s3cr3t-value" not in masked.reason
    assert redacted(Retryable("x", 2.0), settings) == Retryable("x", 2.0)
