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
    assert err["field"] == "body" and "32" in err["message"]   # the HTTP layer's limit, before any parser




def test_strict_loads_as_the_resolvers_deserializer_answers_400_naming_the_key(container: Any) -> None:
    """What wiring ``strict_loads`` into the resolver gives every JSON body (the API layer's part):
    ``"base_fee":"1.00","base_fee":"999.00"`` used to save 999.00."""
    import base64
    import functools
    import json as json_mod
    from pathlib import Path

    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from meterbill.api.app import build_app
    from meterbill.domain.json_body import strict_loads
    from meterbill.local.stack import LambdaContext

    container.keys.create(["admin"], name="admin", secret="mbtest_lambda_admin_0123456789abcdef")
    app = build_app(functools.partial(APIGatewayHttpResolver, json_body_deserializer=strict_loads),  # type: ignore[arg-type]
                    lambda: container)
    event = json_mod.loads((Path(__file__).resolve().parent.parent / "events" / "apigw_put_meter.json").read_text())
    body = '{"event_type": "api.call", "aggregation": "sum", "property": "tokens", "property": "cost"}'
    event["body"] = base64.b64encode(body.encode()).decode()
    resp = app.resolve(event, LambdaContext(function_name="api", aws_request_id="r",
                                            invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:api"))
    assert resp["statusCode"] == 400, resp
    err = json_mod.loads(resp["body"])["error"]
    assert (err["field"], err["code"]) == ("property", "duplicate_key")
    assert container.catalog.list_catalog("METER", 10, None)[0] == []  # nothing stored


def test_a_repeated_key_in_any_json_body_is_a_400_through_the_http_app(api: Api) -> None:
    """The HTTP layer parses every JSON body with the domain's strict reader: last-wins is gone."""
    resp = api.request("PUT", "/v1/plans/dup", content='{"currency": "USD", "base_fee": "1.00", '
                                                       '"base_fee": "999.00", "charges": []}',
                       headers={"content-type": "application/json"})
    err = error(resp, 400)
    assert (err["field"], err["code"]) == ("base_fee", "duplicate_key")
