"""API keys over HTTP (the real app on moto): the Authorization scheme, listing and revoking keys."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from tests.integration.test_api import SECRETS, Api, error


@pytest.fixture
def api(container: Any) -> Api:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container))


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_lower_case_bearer_scheme_is_accepted(api: Api, scheme: str) -> None:
    resp = api.get("/v1/meters", key=None, headers={"Authorization": f"{scheme} {SECRETS['read']}"})
    assert resp.status_code == 200, resp.text


def test_bearer_without_a_key_is_still_401(api: Api) -> None:
    assert error(api.get("/v1/meters", key=None, headers={"Authorization": "bearer "}), 401)["code"] == "unauthorized"
