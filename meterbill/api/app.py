"""Build the HTTP application around the shared Router, for Lambda or for a local ASGI server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from meterbill import __version__
from meterbill.api import errors, guards, openapi
from meterbill.api.admission import admit
from meterbill.api.routes import PATH_PARAMETERS, QUERY_PARAMETERS, router
from meterbill.bootstrap import Container

R = TypeVar("R", bound=ApiGatewayResolver)


def build_app(resolver_cls: type[R], provider: Callable[[], Container]) -> R:
    app = resolver_cls(enable_validation=True)

    def inject(app: Any, next_middleware: Callable[..., Response]) -> Response:
        # The shared router reads its context from the app that included it last (Powertools'
        # include_router): point it at the app serving this request, so that two apps in one
        # process (tests, the conformance suite) never serve a request with the other's context.
        router.api_resolver = app
        app.append_context(container=provider())
        return next_middleware(app)

    app.use(middlewares=[inject])
    # Authenticate, then the HTTP layer's own checks (admission.admit, shared with the lean ingest
    # function). Powertools always runs request validation first, so the check wraps that
    # middleware: an unauthenticated caller gets 401, never a schema error describing the body it
    # should have sent.
    validate = app._request_validation_middleware

    def authenticate_then_validate(app: Any, next_middleware: Callable[..., Response]) -> Response:
        route = app.context.get("_route")
        has_body = bool(route and route.dependant.body_params)
        admit(app.current_event, lambda: provider().keys, route and route.path, has_body,
              app.context.get("_route_args") or {}, PATH_PARAMETERS, lambda: QUERY_PARAMETERS)
        return validate(app, next_middleware)

    app._request_validation_middleware = authenticate_then_validate
    app.include_router(router)
    document: list[str] = []  # built once, on first use: routes do not change after start

    def openapi_json() -> str:
        if not document:
            generated = json.loads(app.get_openapi_json_schema(title="meterbill API", version=__version__))
            document.append(openapi.to_json(openapi.refine(generated, PATH_PARAMETERS, QUERY_PARAMETERS)))
        return document[0]

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi_document():  # type: ignore[no-untyped-def]  # an annotation here breaks schema generation
        return Response(200, "application/json", openapi_json())

    @app.get("/v1/docs", include_in_schema=False)
    def swagger_ui():  # type: ignore[no-untyped-def]
        return Response(200, "text/html", openapi.swagger_html(openapi_json()))

    @app.exception_handler(RequestValidationError)
    def on_validation(exc: RequestValidationError) -> Response:
        return errors.from_validation(exc)

    @app.exception_handler(Exception)
    def on_error(exc: Exception) -> Response:
        return errors.from_exception(exc)

    @app.not_found
    def not_found(exc: Exception) -> Response:
        event = app.current_event
        return errors.from_exception(guards.no_route(event.http_method.upper(), event.path, routes(), PATH_PARAMETERS))

    known: list[guards.Template] = []

    def routes() -> list[guards.Template]:
        if len(known) != len(app._static_routes) + len(app._dynamic_routes):  # routes may be added late
            known[:] = guards.templates(app._static_routes + app._dynamic_routes)
        return known

    return app
