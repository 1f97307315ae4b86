"""The OpenAPI document (GET /v1/openapi.json, and the one Swagger UI shows at /v1/docs): bearer
security, the real error envelope with the statuses each operation answers, typed responses with
examples that match their schemas, the body of POST /v1/events, parameters with their grammar."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from meterbill.domain.ids import ID_PATTERN
from tests.integration.test_api import Api


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    resp = Api(build_app(HttpResolverLocal, lambda: None)).get("/v1/openapi.json", key=None)
    assert resp.status_code == 200
    return resp.json()


def operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{method.upper()} {path}", op) for path, item in doc["paths"].items() for method, op in item.items()]


def test_bearer_security_is_declared_and_only_health_is_public(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": "API key (meterbill keys create)"}}
    assert doc["security"] == [{"bearer": []}]
    public = [key for key, op in operations(doc) if op.get("security") == []]
    assert public == ["GET /v1/health"]


def test_errors_are_the_real_envelope_never_fastapi_style_422(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)
    assert schemas["Error"]["required"] == ["error"]
    assert schemas["Error"]["properties"]["error"]["required"] == ["code", "message", "field"]
    for key, op in operations(doc):
        for status, response in op["responses"].items():
            if status.startswith("4") and not (key == "POST /v1/events" and status == "422"):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
                    (key, status)
        assert "422" not in op["responses"] or key == "POST /v1/events", key


EXPECTED_STATUSES = {
    "GET /v1/health": {"200"},
    "GET /v1/meters": {"200", "400", "401", "403"},
    "GET /v1/meters/{code}": {"200", "400", "401", "403", "404"},
    "PUT /v1/meters/{code}": {"200", "400", "401", "403", "404", "409", "413", "415"},
    "POST /v1/events": {"200", "207", "400", "401", "403", "404", "413", "415", "422"},
    "POST /v1/credit-notes": {"201", "400", "401", "403", "404", "409", "413", "415"},
    "DELETE /v1/customers/{customer_id}/discounts/{discount_id}": {"200", "400", "401", "403", "404", "409"},
}


@pytest.mark.parametrize("key", sorted(EXPECTED_STATUSES))
def test_each_operation_lists_the_statuses_it_answers(doc: dict[str, Any], key: str) -> None:
    assert set(dict(operations(doc))[key]["responses"]) == EXPECTED_STATUSES[key]


def test_every_response_is_typed_and_has_an_example_that_matches_it(doc: dict[str, Any]) -> None:
    for key, op in operations(doc):
        for status, response in op["responses"].items():
            for media, content in response["content"].items():  # the reports: JSON and text/csv
                assert "schema" in content, (key, status)
                if media != "application/json":
                    continue
                assert "example" in content, (key, status)
                validator = jsonschema.Draft202012Validator({**content["schema"], "components": doc["components"]})
                errors = [e.message for e in validator.iter_errors(content["example"])]
                assert errors == [], (key, status, errors)


def test_every_request_body_has_an_example_that_matches_it(doc: dict[str, Any]) -> None:
    for key, op in operations(doc):
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            assert "example" in content, (key, media)
            validator = jsonschema.Draft202012Validator({**content["schema"], "components": doc["components"]})
            assert [e.message for e in validator.iter_errors(content["example"])] == [], (key, media)


def test_post_events_documents_json_and_both_cloudevents_forms(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", "application/cloudevents+json",
                                    "application/cloudevents-batch+json"}
    batch = body["content"]["application/json"]["schema"]
    assert (batch["required"], batch["properties"]["events"]["maxItems"]) == (["events"], 1000)
    event = doc["components"]["schemas"]["EventIn"]
    assert event["required"] == ["id", "customer", "type", "timestamp"]
    assert event["properties"]["id"]["pattern"] == ID_PATTERN


def test_path_parameters_carry_their_grammar_and_an_example(doc: dict[str, Any]) -> None:
    seen = {}
    for key, op in operations(doc):
        for param in op.get("parameters", []):
            if param["in"] == "path":
                assert "pattern" in param["schema"] or "enum" in param["schema"], (key, param)
                assert param.get("example") and param.get("description"), (key, param)
                seen[param["name"]] = param["schema"]
    assert seen["customer_id"]["pattern"] == ID_PATTERN and seen["action"]["enum"] == [
        "mark-paid", "void", "mark-uncollectible"]
    assert re.fullmatch(seen["code"]["pattern"][1:-1], "tokens")


def test_swagger_ui_shows_this_document(doc: dict[str, Any]) -> None:
    page = Api(build_app(HttpResolverLocal, lambda: None)).get("/v1/docs", key=None).text
    assert '"securitySchemes"' in page and "persistAuthorization: true" in page.replace(" ", " ")
    assert json.dumps(doc["info"]["title"]) in page
