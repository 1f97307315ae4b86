"""HTTP routes of outbound webhook endpoints (docs/integrations.md, "Outbound webhooks").

The endpoint's secret is in the answer of a create and of ``rotate-secret`` only, never in a GET
or a listing."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import Field

from meterbill.api.guards import PathParameter
from meterbill.api.routes import PATH_PARAMETERS, Cursor, Limit, container, page, plain, router
from meterbill.api.schemas import Strict
from meterbill.domain.ids import ID_RULE, check_id
from meterbill.domain.webhooks import EVENT_TYPES, MAX_ENDPOINT_TYPES, MAX_URL
from meterbill.services.webhook_endpoints import GRACE_HOURS, MAX_GRACE_HOURS

PATH_PARAMETERS["endpoint_id"] = PathParameter(check_id, PATH_PARAMETERS["customer_id"].schema,
                                               "The webhook endpoint's id, chosen by you: "
                                               + ID_RULE.replace("must be ", "") + ".", "billing-hooks")


class WebhookEndpointIn(Strict):
    url: str = Field(min_length=1, max_length=MAX_URL, examples=["https://hooks.example.com/meterbill"],
                     description="https (http only to 127.0.0.1 or localhost, for a local receiver)")
    event_types: list[str] = Field(min_length=1, max_length=MAX_ENDPOINT_TYPES,
                                   examples=[["invoice.finalized", "invoice.paid"]],
                                   description="some of: " + ", ".join(EVENT_TYPES))
    enabled: bool = True
    description: str | None = Field(default=None, max_length=200)


class RotateSecretIn(Strict):
    grace_hours: int = Field(default=GRACE_HOURS, ge=0, le=MAX_GRACE_HOURS,
                             description="how long the previous secret keeps signing beside the new one")


@router.put("/v1/webhook-endpoints/<endpoint_id>",
            description="Create or change a webhook endpoint. Created: 201, with its signing `secret` "
                        "(Standard Webhooks, `whsec_…`) shown this once. Changed: 200, the secret stays.")
def put_webhook_endpoint(endpoint_id: str, body: Annotated[WebhookEndpointIn, Body()]) -> tuple[dict[str, Any], int]:
    view, created = container().hooks.put(endpoint_id, body.url, body.event_types, body.enabled, body.description)
    return plain(view), 201 if created else 200


@router.get("/v1/webhook-endpoints/<endpoint_id>")
def get_webhook_endpoint(endpoint_id: str) -> dict[str, Any]:
    return plain(container().hooks.get(endpoint_id))


@router.get("/v1/webhook-endpoints")
def list_webhook_endpoints(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return page(*container().hooks.list(limit, cursor))


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
