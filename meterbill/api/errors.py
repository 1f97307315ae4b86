"""The one place where errors become HTTP responses: JSON naming the field and the problem."""

from __future__ import annotations

import json
import logging
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from meterbill.domain.errors import DomainError, InvalidField
from meterbill.services.errors import Conflict, Forbidden, NotFound, ServiceError, Unauthorized

log = logging.getLogger(__name__)
LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
STATUS = {Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409}


class RequestRejected(Exception):
    """The HTTP layer refuses the request as sent (size, media type, encoding, method), before any
    service sees it."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def error_response(status: int, code: str, message: str, field: str | None = None,
                   details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "field": field}}
    if details:
        body["error"]["details"] = details
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(status_code=status, content_type="application/json", body=json.dumps(body),
                    headers=headers or None)


def from_exception(exc: Exception) -> Response:
    if isinstance(exc, RequestRejected):
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=exc.headers)
    if isinstance(exc, InvalidField):
        return error_response(400, exc.code, exc.problem, exc.field)
    if isinstance(exc, ServiceError):
        return error_response(STATUS.get(type(exc), 400), exc.code, exc.message, exc.field)
    if isinstance(exc, DomainError):
        return error_response(400, exc.code, str(exc))
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; the request can be retried safely")


def from_validation(exc: RequestValidationError) -> Response:
    details = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc and loc[0] in LOCATIONS:  # the field's name is enough: a body field and a parameter never share one
            loc = loc[1:]
        field = ".".join(loc) if loc else "body"
        details.append({"field": field, "problem": err.get("msg", "is invalid")})
    first = details[0] if details else {"field": "body", "problem": "is invalid"}
    return error_response(400, "invalid_field", first["problem"], first["field"], details)
