"""Who may call what, and the HTTP layer's checks before a request reaches its handler: the one
definition the routed API (``app.py``) and the lean ingest function (``events.py``) both run.

Light on purpose (no pydantic, no router): the ingest function's cold start imports it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from meterbill.api import guards

if TYPE_CHECKING:
    from meterbill.services.keys import KeyService

# /v1/webhooks/stripe: the Stripe signature over the raw body authenticates it (routes_stripe_webhook.py)
PUBLIC = frozenset({"/v1/health", "/v1/docs", "/v1/openapi.json", "/v1/webhooks/stripe"})
PORTAL = "/portal/"
Rules = Mapping[str, guards.PathParameter]


def required_scope(method: str, path: str) -> str | None:
    """The one access policy. Anything not listed needs admin (default deny)."""
    if path in PUBLIC or path.startswith(PORTAL):
        return None   # the portal's pages authenticate by their signed link (routes_portal.py)
    if method == "POST" and path == "/v1/events":
        return "ingest"
    parts = [s for s in path.lower().split("/") if s]
    if parts[1:2] == ["api-keys"] or (parts[1:2] == ["customers"] and parts[3:] == ["export"]):
        return "admin"  # keys, and everything about a person at once, are admin-only, to read as well
    if method in ("GET", "HEAD"):
        return "read"
    return "admin"


def admit(event: Any, keys: Callable[[], KeyService], route_path: str | None, has_body_model: bool,
          route_args: dict[str, str], path_rules: Rules, query_rules: Callable[[], Rules]) -> None:
    """Authenticate before anything else looks at the request (an unauthenticated caller gets
    401, never a complaint about the body it should have sent; ``keys()`` is asked only for a
    route that needs a key); then, for a request a route
    takes, its path parameters (decoded in place), query parameters (``query_rules()`` is asked
    only when there are some) and body: size, media type, encoding, nesting, JSON syntax."""
    method = event.http_method.upper()
    scope = required_scope(method, event.path)
    if scope is not None:
        keys().authorize(event.headers.get("authorization"), scope)
    if route_path is None:
        return
    guards.check_path(route_args, path_rules)
    query = event.resolved_query_string_parameters
    if query:
        guards.check_query(query, query_rules())
    guards.check_body(event, guards.body_rule(method, route_path, has_body_model))
