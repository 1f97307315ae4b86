"""The local HTTP entry (uvicorn): Powertools' ASGI resolver with each request's whole chain run
on one worker thread — the synchronous chain Lambda runs (``resolve``), not the async bridge.

Why (issue 12): ``HttpResolverLocal`` resolves a request with ``AsyncMiddlewareFrame``s, which run
every synchronous middleware (ours: ``inject``, ``authenticate_then_validate``; Powertools' response
validation) on a thread of asyncio's default executor, and let it wait there (``sync_next`` →
``Future.result``) for the next step, which needs another such thread. A request holds one thread
while it waits for the next: with a few requests in flight every thread waits for a thread and the
server never answers again. (It also runs synchronous route handlers on the event loop itself.)

Here the event loop only reads and writes bytes (``HttpResolverLocal.asgi_handler``, whose
per-request state lives in a ``ContextVar``). It hands the request to ``_resolve`` — route match,
``MiddlewareFrame`` chain, handler, exception handlers — on a thread of a pool of its own, with a
copy of the request's context. A request never waits for a second thread, so clients beyond the
pool's size only queue: no number of them can stall it.

Powertools fills some per-route state lazily, on a route's first use, in ways that are not safe
against two threads at once: the cached middleware chain (two concurrent first calls can wrap the
chain twice) and the route's ``dependant`` (concurrent OpenAPI document builds then mix two
copies: ``KeyError`` in ``get_definitions``' field mapping). All of it is therefore filled on the
event-loop thread, one thread, before the first request is handed to a worker. The chain build
uses Powertools internals (its version is pinned in pyproject.toml); tests/integration/test_asgi.py
pins the behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import threading
from collections.abc import Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import parse_qs, quote

from aws_lambda_powertools.event_handler import HttpResolverLocal
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.http_resolver import MockLambdaContext, _RequestState

from meterbill.api.errors import error_response

# Requests resolved at once; more only queue (FIFO), which never stalls. A request mostly waits on
# DynamoDB (moto locally), so more threads than cores pay off for small requests; 1,000-event
# batches are bound by moto's one process whatever the count (docs/performance.md, 2026-12-01).
WORKERS = 16


class ThreadedHttpResolver(HttpResolverLocal):
    """An ASGI app: ``HttpResolverLocal`` running each request's chain on one worker thread."""

    def __init__(self, *args: Any, workers: int = WORKERS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http")
        self._in_flight: set[Future[dict[str, Any]]] = set()
        self._lock = threading.Lock()  # guards _in_flight: futures finish on worker threads
        self._routes_ready = False

    async def asgi_handler(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                           send: Callable[..., Any]) -> None:
        """Powertools' ``asgi_handler``, with the request handed over the way API Gateway hands it
        to Lambda (``local_event``) instead of ``HttpProxyEvent.from_asgi``, which fails with a
        plain-text 500 on a body or header that is not UTF-8 and decodes the path before routing."""
        if scope["type"] != "http":
            return await super().asgi_handler(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        state = _RequestState(event=self._to_proxy_event(local_event(scope, body)),
                              lambda_context=MockLambdaContext(), context=self._startup_state.context.copy())
        token = self._request_state.set(state)
        try:
            response = await self._resolve_async()
        finally:
            self._request_state.reset(token)
        await self._send_response(send, response)

    async def _resolve_async(self) -> dict[str, Any]:  # type: ignore[override]
        """Called by ``asgi_handler`` on the event loop, with this request's state set."""
        if not self._routes_ready:
            self._prepare_routes()
        future = self._pool.submit(contextvars.copy_context().run, self._resolve_to_dict)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._done)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The server is stopping: close() dropped the request from the queue, or uvicorn's
            # graceful-shutdown timeout gave up waiting for it. The client gets a clear answer
            # instead of uvicorn's bare 500 (and a logged traceback).
            return self._stopping()

    def _stopping(self) -> dict[str, Any]:
        response = error_response(503, "unavailable", "the server is stopping; retry the request "
                                                      "(repeating it is safe: event ids are idempotent)")
        response.headers["Retry-After"] = "1"
        return ResponseBuilder(response).build(self.current_event, self._cors)

    def _done(self, future: Future[dict[str, Any]]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def _resolve_to_dict(self) -> dict[str, Any]:
        """On the worker: the whole synchronous chain, then the response as a dict."""
        return self._resolve().build(self.current_event, self._cors)

    def _prepare_routes(self) -> None:
        """Fill every route's lazily built state now, on one thread (see the module docstring)."""
        for route in self._static_routes + self._dynamic_routes:
            _ = (route.dependant, route.body_field, route.has_dependencies)  # properties that fill caches
            if not route._middleware_stack_built:
                route._build_middleware_stack(router_middlewares=self._router_middlewares, app=self)
        self._routes_ready = True

    def close(self, timeout: float) -> bool:
        """Stop: drop the requests still queued, wait up to ``timeout`` seconds for the running ones.
        True when none is left running."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = list(self._in_flight)
        return not wait(running, timeout=timeout).not_done


def local_event(scope: MutableMapping[str, Any], body: bytes) -> dict[str, Any]:
    """The request as Powertools' proxy event, shaped the way API Gateway passes it to Lambda:

    * the path as sent, still percent-encoded (``rawPath``): routes match segments, and each path
      parameter is decoded once, by the HTTP layer (``guards.decode_segment``), so ``%2F`` or
      ``%23`` inside an id reach its grammar check instead of splitting or ending the path;
    * a body that is not UTF-8 base64-encoded with ``isBase64Encoded`` (API Gateway does the same
      for binary content), for the HTTP layer to refuse with a 400;
    * header values that are not UTF-8 read as Latin-1 (HTTP's historical charset)."""
    raw_path = scope.get("raw_path")
    if raw_path:  # some ASGI clients (httpx' transport) append the query string to raw_path
        path = raw_path.split(b"?", 1)[0].decode("latin-1")
    else:
        path = quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = _text(value)
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    query = _text(scope.get("query_string", b""))
    multi = parse_qs(query, keep_blank_values=True) if query else {}
    try:
        text_body, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text_body, encoded = base64.b64encode(body).decode("ascii"), True
    method = scope["method"].upper()
    return {"httpMethod": method, "path": path, "headers": headers, "body": text_body if body else None,
            "isBase64Encoded": encoded, "queryStringParameters": {k: v[-1] for k, v in multi.items()},
            "multiValueQueryStringParameters": multi, "pathParameters": {},
            "requestContext": {"stage": "local", "requestId": "local-request-id",
                               "http": {"method": method, "path": path}}}


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
