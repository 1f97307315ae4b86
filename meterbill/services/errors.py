"""Service-layer errors. The HTTP mapping lives in one place: meterbill.api.errors."""

from __future__ import annotations

from meterbill.domain.errors import DomainError, InvalidField

__all__ = ["ServiceError", "NotFound", "Conflict", "Unauthorized", "Forbidden", "InvalidField",
           "DomainError", "UnstorableItem"]


class ServiceError(Exception):
    code = "service_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    code = "not_found"


class Conflict(ServiceError):
    code = "conflict"


class Unauthorized(ServiceError):
    code = "unauthorized"


class Forbidden(ServiceError):
    code = "forbidden"


class UnstorableItem(ServiceError):
    """The store refuses the item itself (too large, a number out of its range): retrying the
    same write can never succeed."""

    code = "unstorable"
