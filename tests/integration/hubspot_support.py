"""Builders for the HubSpot workflow and contract tests."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.hubspot import HubSpotIntegration
from meterbill.integration.settings import IntegrationSettings

TOKEN = "pat-na1-test-token"


def settings(**extra: str) -> IntegrationSettings:
    return IntegrationSettings("hubspot", {"access_token": TOKEN, **extra})


@pytest.fixture
def hubspot() -> Any:
    from tests.integration.hubspot_fake import FakeHubSpot

    return FakeHubSpot()


@pytest.fixture
def hsink(hubspot: Any) -> HubSpotIntegration:
    return HubSpotIntegration(settings(), http=hubspot)
