"""HTTP routes of outbound webhook endpoints (docs/integrations.md, "Outbound webhooks").

The endpoint's secret is in the answer of a create and of ``rotate-secret`` only, never in a GET
or a listing."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api import documents, openapi
from meterbill.api.documents import BOOL, INSTANT, INT, STRING, array, obj
from meterbill.api.guards import PathParameter
from meterbill.api.routes import PATH_PARAMETERS, Cursor, Limit, container, page, plain, router
from meterbill.api.schemas import Strict
from meterbill.domain.ids import ID_RULE, check_id
from meterbill.domain.webhooks import EVENT_TYPES, MAX_ENDPOINT_TYPES, MAX_URL
from meterbill.services.webhook_endpoints import GRACE_HOURS, MAX_GRACE_HOURS

PATH_PARAMETERS["endpoint_id"] = PathParameter(check_id, PATH_PARAMETERS["customer_id"].schema,
                                               "The webhook endpoint's id, chosen by you: "
                                               + ID_RULE.replace("must be ", "") + ".", "billing-hooks")


# What the OpenAPI document says of these routes (meterbill/api/openapi.py, documents.py).
_ENDPOINT = "/v1/webhook-endpoints/{endpoint_id}"
_TYPES = array({"type": "string", "enum": list(EVENT_TYPES)})
documents.SCHEMAS.update({
    "WebhookEndpoint": obj({"id": STRING, "url": STRING, "event_types": _TYPES, "enabled": BOOL,
                            "created_at": INSTANT, "updated_at": INSTANT},
                           {"description": STRING, "secret_rotated_at": INSTANT,
                            "secret": {**STRING, "description": "whsec_…: in the create and rotate answers only"},
                            "previous_secret_expires_at": INSTANT},
                           description="an outbound webhook endpoint; its secret is shown once, never listed"),
    "WebhookDelivery": obj({"id": {**STRING, "description": "the webhook-id header: the same on every attempt"},
                            "event_id": STRING, "event_type": STRING, "event_at": INSTANT,
                            "status": {"type": "string", "enum": ["pending", "in_flight", "delivered", "failed"]},
                            "attempts": INT, "created_at": INSTANT},
                           {"status_code": INT, "error": STRING, "last_attempt_at": INSTANT,
                            "delivered_at": INSTANT}),
    "WebhookEndpointPage": documents.page("WebhookEndpoint"),
    "WebhookDeliveryPage": documents.page("WebhookDelivery"),
})
_EXAMPLE = {"id": "billing-hooks", "url": "https://hooks.example.com/meterbill",
            "event_types": ["invoice.finalized", "invoice.paid"], "enabled": True,
            "created_at": "2026-11-05T12:00:00Z", "updated_at": "2026-11-05T12:00:00Z", "secret_rotated_at": None}
_DELIVERY = {"id": "msg_5f0c8e2d1b3a4c6e8f9a0b1c2d3e4f5a", "event_id": "evt_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
             "event_type": "invoice.finalized", "event_at": "2026-11-01T00:05:00Z", "status": "delivered",
             "status_code": 200, "error": None, "attempts": 1, "last_attempt_at": "2026-11-01T00:05:01Z",
             "delivered_at": "2026-11-01T00:05:01Z", "created_at": "2026-11-01T00:05:01Z"}
documents.EXAMPLES.update({
    "WebhookEndpoint": _EXAMPLE, "WebhookEndpointPage": {"data": [_EXAMPLE], "next_cursor": None},
    "WebhookDelivery": _DELIVERY, "WebhookDeliveryPage": {"data": [_DELIVERY], "next_cursor": None},
})
openapi.SUCCESS.update({
    f"PUT {_ENDPOINT}": (200, "WebhookEndpoint"), f"GET {_ENDPOINT}": (200, "WebhookEndpoint"),
    f"DELETE {_ENDPOINT}": (200, "WebhookEndpoint"), "GET /v1/webhook-endpoints": (200, "WebhookEndpointPage"),
    f"POST {_ENDPOINT}/rotate-secret": (200, "WebhookEndpoint"),
    f"GET {_ENDPOINT}/deliveries": (200, "WebhookDeliveryPage"),
})
openapi.REQUESTS.update({f"PUT {_ENDPOINT}": {"url": "https://hooks.example.com/meterbill",
                                              "event_types": ["invoice.finalized", "invoice.paid"]},
                         f"POST {_ENDPOINT}/rotate-secret": {"grace_hours": 24}})


class WebhookEndpointIn(Strict):
    url: str = Field(min_length=1, max_length=MAX_URL, examples=["https://hooks.example.com/meterbill"],
                     pattern=r"^https?://",
                     description="https (http only to 127.0.0.1 or localhost, for a local receiver), a host, "
                                 "no user or password, no #fragment")
    event_types: list[str] = Field(min_length=1, max_length=MAX_ENDPOINT_TYPES,
                                   examples=[["invoice.finalized", "invoice.paid"]],
                                   json_schema_extra={"items": {"type": "string", "enum": list(EVENT_TYPES)}},
                                   description="some of: " + ", ".join(EVENT_TYPES))
    enabled: bool = True
    description: str | None = Field(default=None, max_length=200)


class RotateSecretIn(Strict):
    grace_hours: int = Field(default=GRACE_HOURS, ge=0, le=MAX_GRACE_HOURS,
                             description="how long the previous secret keeps signing beside the new one")


@router.put("/v1/webhook-endpoints/<endpoint_id>",
            description="Create or change a webhook endpoint. Created: the answer carries its signing `secret` "
                        "(Standard Webhooks, `whsec_…`), shown this once. Changed: no secret (it stays).")
def put_webhook_endpoint(endpoint_id: str, body: Annotated[WebhookEndpointIn, Body()]) -> dict[str, Any]:
    view, _ = container().hooks.put(endpoint_id, body.url, body.event_types, body.enabled, body.description)
    return plain(view)


@router.get("/v1/webhook-endpoints/<endpoint_id>")
def get_webhook_endpoint(endpoint_id: str) -> dict[str, Any]:
    return plain(container().hooks.get(endpoint_id))


@router.get("/v1/webhook-endpoints")
def list_webhook_endpoints(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().hooks.list_endpoints(limit, cursor))


@router.delete("/v1/webhook-endpoints/<endpoint_id>",
               description="Disable the endpoint: it receives nothing more (kept with its deliveries; "
                           "PUT it with enabled true to resume).")
def disable_webhook_endpoint(endpoint_id: str) -> dict[str, Any]:
    return plain(container().hooks.disable(endpoint_id))


@router.post("/v1/webhook-endpoints/<endpoint_id>/rotate-secret",
             description="A new signing secret, shown this once; the previous one keeps signing beside it for "
                         "`grace_hours` (default 24), so receivers can switch without losing an event.")
def rotate_webhook_secret(endpoint_id: str, body: Annotated[RotateSecretIn, Body()]) -> dict[str, Any]:
    return plain(container().hooks.rotate_secret(endpoint_id, body.grace_hours))


@router.get("/v1/webhook-endpoints/<endpoint_id>/deliveries",
            description="The endpoint's deliveries, newest event first: pending, delivered (status code) or "
                        "failed (reason), with attempts and the last attempt's time.")
def list_webhook_deliveries(endpoint_id: str, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().hooks.deliveries(endpoint_id, limit, cursor))
