"""Issue 8, hardening, through the HTTP API on moto: JSON event bodies with a repeated key or nested
too deep (``domain/json_body.py``; the API's other bodies use ``json_body.strict_loads`` once it is
the resolver's deserializer).

Plan 'pro' (tests/integration/test_api.py); customer 'acme' monthly from 2026-10-01."""

# ruff: noqa: F811  (the API fixtures are imported from test_api and used as parameters)
from __future__ import annotations

from typing import Any

from tests.integration.test_api import Api, api, catalog, error  # noqa: F401


def test_duplicate_keys_in_an_event_reject_that_event(catalog: Api, drain: Any) -> None:
    body = ('{"events": [{"id": "e1", "customer": "acme", "type": "api.call", "timestamp": "2026-10-10T10:00:00Z",'
            ' "properties": {"tokens": 1, "tokens": 999}},'
            ' {"id": "e2", "customer": "acme", "type": "api.call", "timestamp": "2026-10-10T10:00:00Z",'
            ' "properties": {"tokens": 5}}]}')
    resp = catalog.request("POST", "/v1/events", content=body, key="ingest",
                           headers={"content-type": "application/json"})
    assert resp.status_code == 207, resp.text
    (err,) = resp.json()["errors"]
    assert (err["index"], err["field"], err["code"]) == (0, "properties.tokens", "duplicate_key")
    wrapper = '{"events": [], "events": [{"id": "x"}]}'
    resp = catalog.request("POST", "/v1/events", content=wrapper, key="ingest",
                           headers={"content-type": "application/json"})
    assert error(resp, 400)["field"] == "events"


def test_deeply_nested_event_bodies_are_refused_clearly(catalog: Api) -> None:
    deep = '{"events": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    resp = catalog.request("POST", "/v1/events", content=deep, key="ingest", headers={"content-type": "application/json"})
    err = error(resp, 400)
    assert err["field"] == "body" and "64" in err["message"]


