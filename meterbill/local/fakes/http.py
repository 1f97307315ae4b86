"""The HTTP boundary of the OpenAPI-generated SDKs (hubspot-api-client, xero-python): both send
every request through ``rest_client.pool_manager.request(...)`` (urllib3). A fake vendor
subclasses :class:`FakeHTTP` and is put there (``HubSpotIntegration(settings, http=fake)``): the
real SDK builds the requests, parses the responses and raises its own errors.

Faults are queued with ``fail(method, path regex, kind)``: ``500`` (nothing happens),
``500_after`` / ``timeout_after`` (the request took effect, the answer is lost), ``timeout_before``,
``429`` (with Retry-After), ``400``. With ``idempotent = True`` the first response under an
``Idempotency-Key`` is saved and replayed; ``forget_keys()`` is the vendor pruning its keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import urllib3

Reply = tuple[int, Any, dict[str, str]]


@dataclass
class Fault:
    method: str
    path: str
    kind: str
    retry_after: str | None = None


@dataclass
class Request:
    method: str
    url: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


def _number(value: Any) -> Any:
    """Decimals as JSON numbers (the SDKs parse them back as Decimal: exact for money)."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


class FakeResponse:
    """What the SDKs read from a urllib3 response: status, reason, data, headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Error")
        self.data = b"" if body is None else json.dumps(body, default=_number).encode()
        self.headers = {"Content-Type": "application/json", **headers}

    def getheaders(self) -> dict[str, str]:
        return dict(self.headers)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), default)


class Answer(Exception):
    """Raised by a route to answer with an error."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.reply: Reply = (status, body, headers or {})


class FakeHTTP:
    idempotent = False
    replays_failures = True               # a 5xx is saved under its key too (Stripe does)
    key_header = "Idempotency-Key"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.keys: dict[str, tuple[str, Reply]] = {}

    # -- test controls -------------------------------------------------------------------------------

    def fail(self, method: str, path: str, kind: str, times: int = 1, retry_after: str | None = None) -> None:
        self.faults += [Fault(method, path, kind, retry_after) for _ in range(times)]

    def forget_keys(self) -> None:
        self.keys.clear()

    def calls(self, method: str, path: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path or ".*", r.path)]

    # -- the boundary -----------------------------------------------------------------------------------

    def request(self, method: str, url: str, fields: Any = None, headers: Any = None, body: Any = None,
                **_: Any) -> FakeResponse:
        method, parts = method.upper(), urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        data: Any = None
        if isinstance(body, (str, bytes)) and body:
            data = json.loads(body, parse_float=Decimal)
        elif fields:
            if method in ("GET", "DELETE"):
                query.update(dict(fields))
            else:
                data = dict(fields)
        headers = dict(headers or {})
        req = Request(method, url, parts.path, query, data, headers)
        self.requests.append(req)
        key = next((v for k, v in headers.items() if k.lower() == self.key_header.lower()), None)
        fingerprint = json.dumps([method, parts.path, query, data], sort_keys=True, default=str)
        if self.idempotent and key and method != "GET" and key in self.keys:
            saved_print, saved = self.keys[key]
            if saved_print != fingerprint:
                return FakeResponse(400, {"Message": "idempotency key reused with other parameters"}, {})
            return FakeResponse(saved[0], saved[1], {**saved[2], "Idempotent-Replayed": "true"})
        fault = next((f for f in self.faults if f.method == method and re.fullmatch(f.path, parts.path)), None)
        if fault is not None:
            self.faults.remove(fault)
        kind = fault.kind if fault else None
        if kind == "timeout_before":
            raise urllib3.exceptions.ReadTimeoutError(None, url, "Read timed out (fake)")  # type: ignore[arg-type]
        if kind == "429":
            return FakeResponse(429, self.error_body(429, "rate limited (fake)"),
                                {"Retry-After": fault.retry_after} if fault and fault.retry_after else {})
        if kind == "400":
            return FakeResponse(400, self.error_body(400, "invalid (fake)"), {})
        if kind == "500":
            reply: Reply = (500, self.error_body(500, "internal error (fake)"), {})
        else:
            try:
                reply = self.route(req)
            except Answer as answer:
                reply = answer.reply
            if kind == "500_after":
                reply = (500, self.error_body(500, "internal error (fake, after processing)"), {})
        saved = reply[0] not in (400, 409, 429) and (self.replays_failures or reply[0] < 500)
        if self.idempotent and key and method != "GET" and saved:
            self.keys[key] = (fingerprint, reply)
        if kind == "timeout_after":
            raise urllib3.exceptions.ReadTimeoutError(None, url, "Read timed out (fake, after processing)")  # type: ignore[arg-type]
        return FakeResponse(*reply)

    def clear(self) -> None:
        pass

    # -- for subclasses ----------------------------------------------------------------------------------

    def route(self, req: Request) -> Reply:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "status": status}
