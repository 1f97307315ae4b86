"""Xero rotates the refresh token on every refresh: the new one is written back to the store the
settings came from (SSM Parameter Store, Secrets Manager — on moto), so the next cold start refreshes
with a live token, never the dead one it started with."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from integrations.xero import XeroIntegration
from meterbill.adapters.secrets import ParameterStoreSettings, SecretsManagerSettings
from tests.integration.xero_fake import FakeXero
from tests.integration.xero_support import ACCOUNTS, CLIENT_SECRET, TENANT

CUSTOMER = {"id": "cus_1", "name": "Acme Ltd", "email": "billing@acme.test"}
PLAIN = {"client_id": "CID0000", "tenant_id": TENANT, "grant_type": "refresh_token",
         "payment_account_code": "090", "account_codes": json.dumps(ACCOUNTS)}


def refresh_tokens_sent(xero: FakeXero) -> list[str]:
    return [r.body["refresh_token"] for r in xero.requests if "identity" in r.url]


@pytest.fixture
def ssm(aws: None) -> Any:
    client = boto3.client("ssm", region_name="us-east-1")
    for name, value in PLAIN.items():
        client.put_parameter(Name=f"/meterbill/xero/{name}", Value=value, Type="String")
    client.put_parameter(Name="/meterbill/xero/client_secret", Value=CLIENT_SECRET, Type="SecureString")
    client.put_parameter(Name="/meterbill/xero/refresh_token", Value="xrt_0", Type="SecureString")
    return client


def test_the_rotated_refresh_token_is_kept_in_parameter_store_for_the_next_cold_start(ssm: Any) -> None:
    xero = FakeXero()
    XeroIntegration(ParameterStoreSettings(ssm).load("xero"), http=xero).upsert_customer(CUSTOMER)
    stored = ssm.get_parameter(Name="/meterbill/xero/refresh_token", WithDecryption=True)["Parameter"]
    assert (stored["Value"], stored["Type"]) == ("xrt_1", "SecureString")       # Xero's new one, still secret

    # the next cold start: settings read again, the SDK refreshes with the live token
    XeroIntegration(ParameterStoreSettings(ssm).load("xero"), http=xero).upsert_customer(
        {**CUSTOMER, "id": "cus_2", "name": "Beta Ltd"})
    assert refresh_tokens_sent(xero) == ["xrt_0", "xrt_1"]
    assert ssm.get_parameter(Name="/meterbill/xero/refresh_token", WithDecryption=True)["Parameter"]["Value"] == "xrt_2"


def test_the_rotated_refresh_token_is_kept_in_secrets_manager_with_the_other_settings(aws: None) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.create_secret(Name="meterbill/xero", SecretString=json.dumps(
        {**PLAIN, "client_secret": CLIENT_SECRET, "refresh_token": "xrt_0"}))
    xero = FakeXero()
    XeroIntegration(SecretsManagerSettings(sm).load("xero"), http=xero).upsert_customer(CUSTOMER)
    kept = json.loads(sm.get_secret_value(SecretId="meterbill/xero")["SecretString"])
    assert kept == {**PLAIN, "client_secret": CLIENT_SECRET, "refresh_token": "xrt_1"}
    XeroIntegration(SecretsManagerSettings(sm).load("xero"), http=xero).upsert_customer(
        {**CUSTOMER, "id": "cus_2", "name": "Beta Ltd"})
    assert refresh_tokens_sent(xero) == ["xrt_0", "xrt_1"]


def test_a_token_held_in_the_process_is_not_written_again(ssm: Any) -> None:
    """One refresh per rotation: calls with the token held write nothing."""
    xero = FakeXero()
    sink = XeroIntegration(ParameterStoreSettings(ssm).load("xero"), http=xero)
    sink.upsert_customer(CUSTOMER)
    sink.upsert_customer({**CUSTOMER, "id": "cus_2", "name": "Beta Ltd"})
    assert refresh_tokens_sent(xero) == ["xrt_0"]
    history = ssm.get_parameter_history(Name="/meterbill/xero/refresh_token", WithDecryption=True)["Parameters"]
    assert [p["Value"] for p in history] == ["xrt_0", "xrt_1"]


def test_the_identity_endpoint_can_be_a_local_stand_in() -> None:
    """``identity_url`` (meterbill run's stand-in): token requests go there, API calls do not."""
    from tests.integration.xero_support import settings

    xero = FakeXero()
    local = "http://127.0.0.1:9/identity.xero.com/connect/token"
    XeroIntegration(settings(identity_url=local), http=xero).upsert_customer(CUSTOMER)
    assert [r.url for r in xero.requests if "identity" in r.url] == [local]
    assert all(r.url.startswith("https://api.xero.com/") for r in xero.requests if "identity" not in r.url)
    assert [p.field for p in XeroIntegration(settings()).validate_config(settings(identity_url="nope"))] == ["identity_url"]
