"""Builders for the Xero workflow and contract tests: settings with a per-meter account mapping,
the plugin on a fake (or on Prism with a token already held)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.xero import XeroIntegration
from meterbill.integration.settings import IntegrationSettings

CLIENT_SECRET = "xero_client_secret_never_logged_0000"
TENANT = "70784a63-d24b-46a9-a4db-0e70a274b056"
ACCOUNTS = {
    "meter_0": {"account_code": "200", "tax_type": "OUTPUT2"},
    "meter_1": {"account_code": "201", "tax_type": "OUTPUT2"},
    "@discount": {"account_code": "200", "tax_type": "OUTPUT2"},
    "@credit": {"account_code": "840", "tax_type": "NONE"},
    "@credit_note": {"account_code": "200", "tax_type": "OUTPUT2"},
    "*": {"account_code": "260", "tax_type": "OUTPUT2"},
}
HELD_TOKEN = {"access_token": "xat_held", "refresh_token": None, "scope": ["accounting.invoices"],
              "expires_in": 1800, "expires_at": 9_999_999_999, "token_type": "Bearer", "id_token": None}


def settings(accounts: dict[str, Any] | None = None, **extra: str) -> IntegrationSettings:
    return IntegrationSettings("xero", {"client_id": "CID0000", "client_secret": CLIENT_SECRET, "tenant_id": TENANT,
                                        "payment_account_code": "090",
                                        "account_codes": json.dumps(ACCOUNTS if accounts is None else accounts),
                                        **extra})


@pytest.fixture
def xero() -> Any:
    from tests.integration.xero_fake import FakeXero

    return FakeXero()


@pytest.fixture
def xsink(xero: Any) -> XeroIntegration:
    return XeroIntegration(settings(), http=xero)
