"""Integration settings read from SSM Parameter Store and Secrets Manager (moto): values arrive,
secrets stay hidden in every repr, error and log line."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from meterbill.adapters.secrets import ParameterStoreSettings, SecretsManagerSettings
from meterbill.integration.errors import ConfigError

API_KEY = "sk_live_51Hverysecret0000000000000000"
WEBHOOK = "whsec_0123456789abcdef"


@pytest.fixture
def ssm(aws: None) -> Any:
    return boto3.client("ssm", region_name="us-east-1")


@pytest.fixture
def secretsmanager(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1")


def test_parameter_store_settings_by_path(ssm: Any, caplog: pytest.LogCaptureFixture) -> None:
    ssm.put_parameter(Name="/meterbill/stripe/api_key", Value=API_KEY, Type="SecureString")
    ssm.put_parameter(Name="/meterbill/stripe/account_ref", Value="acct_hidden_1", Type="SecureString")
    ssm.put_parameter(Name="/meterbill/stripe/api_base", Value="https://api.stripe.com", Type="String")
    ssm.put_parameter(Name="/meterbill/xero/api_key", Value="other", Type="SecureString")
    settings = ParameterStoreSettings(ssm, "/meterbill/").load("stripe")
    assert settings.names() == {"api_key", "account_ref", "api_base"}
    assert settings.get("api_base") == "https://api.stripe.com"
    key = settings.secret("api_key")
    assert key is not None and key.reveal() == API_KEY
    with pytest.raises(KeyError, match="'account_ref' is secret"):   # a SecureString is secret whatever its name
        settings.get("account_ref")
    with caplog.at_level(logging.INFO):
        logging.getLogger("meterbill").info("loaded %r %s", settings, key)
    for text in (repr(settings), caplog.text):
        assert API_KEY not in text and "acct_hidden_1" not in text


def test_secrets_manager_settings_from_one_json_secret(secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="meterbill/stripe", SecretString=json.dumps(
        {"API_KEY": API_KEY, "webhook_secret": WEBHOOK, "api_base": "https://api.stripe.com"}))
    settings = SecretsManagerSettings(secretsmanager).load("stripe")
    assert settings.get("api_base") == "https://api.stripe.com"
    webhook = settings.secret("webhook_secret")
    assert webhook is not None and webhook.reveal() == WEBHOOK
    assert API_KEY not in repr(settings) and WEBHOOK not in repr(settings)


def test_a_missing_or_malformed_secret_is_named_but_never_echoed(secretsmanager: Any) -> None:
    with pytest.raises(ConfigError, match="secret 'meterbill/stripe' does not exist"):
        SecretsManagerSettings(secretsmanager).load("stripe")
    secretsmanager.create_secret(Name="meterbill/stripe", SecretString=f"api_key={API_KEY}")
    with pytest.raises(ConfigError, match="must be a JSON object of string settings") as err:
        SecretsManagerSettings(secretsmanager).load("stripe")
    assert API_KEY not in str(err.value) and API_KEY not in repr(err.value)
