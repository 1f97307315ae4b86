"""POST /v1/events over HTTP: the answer the routed API gives (``routes.post_events``) and the
lean application the ingest function serves (``functions/ingest.py``), one definition for both.

The lean application imports only what ingest needs (no pydantic request models, no OpenAPI,
no rendering, no billing): the ingest path's cold start (docs/performance.md, issue 9). It
answers exactly as the routed API does: same admission (``admission.admit``: the ``ingest``
scope, the HTTP guards), same bodies and status codes, same metrics."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from meterbill.api import errors
from meterbill.api.admission import Rules, admit

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

    from meterbill.bootstrap import IngestContainer
    from meterbill.services.ingest import IngestService

    R = TypeVar("R", bound=ApiGatewayResolver)
else:
    R = TypeVar("R")

PATH = "/v1/events"
# A namespace of its own when the environment gives none (the template and `meterbill run` do): Powertools
# publishes every 100th value of a metric, and without a namespace that raised inside the 100th ingest
# request, after its events were stored (a 500 for a request that had succeeded).
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "meterbill")


def answer(ingest: IngestService, event: Any) -> tuple[dict[str, Any], int]:
    """Ingest the request's body; 200: all accepted, 207: some rejected, 422: none accepted."""
    result = ingest.ingest(event.decoded_body, event.headers.get("content-type"))
    metrics.add_metric("EventsAccepted", MetricUnit.Count, result.accepted)
    metrics.add_metric("EventsDuplicate", MetricUnit.Count, result.duplicates)
    metrics.add_metric("EventsRejected", MetricUnit.Count, len(result.errors))
    ok = result.accepted + result.duplicates
    return result.as_dict(), (200 if not result.errors else 207 if ok else 422)


def query_rules() -> Rules:
    """The routed API's query-parameter grammar, imported only for a request that has a query
    string (rare on ingest): the router's module is what the lean function avoids loading."""
    from meterbill.api.routes import QUERY_PARAMETERS

    return QUERY_PARAMETERS


def build_ingest_app(resolver_cls: type[R], provider: Callable[[], IngestContainer]) -> R:
    """POST /v1/events alone, as the routed API serves it. No request validation: the route
    takes no parameters and no body model (ingest validates its own body, event by event)."""
    app = resolver_cls()

    @app.post(PATH)
    def post_events() -> tuple[dict[str, Any], int]:
        event = app.current_event
        admit(event, lambda: provider().keys, PATH, False, {}, {}, query_rules)
        return answer(provider().ingest, event)

    app.exception_handler(Exception)(errors.from_exception)
    return app
