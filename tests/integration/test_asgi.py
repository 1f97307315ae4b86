"""The local HTTP entry (meterbill/api/asgi.py) in-process over ASGI, on moto in-process: many
concurrent requests on few worker threads all answer, each request's whole chain runs on one
worker thread with its own state, and a stop answers queued requests 503. Also: neither it nor
the Lambda entry (functions/api.py) uses Powertools' async middleware bridge (issue 12)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.middlewares import async_utils

from meterbill.api.app import build_app
from meterbill.api.asgi import ThreadedHttpResolver
from tests.conftest import ev
from tests.integration.test_lambda_handlers import ctx, recorded, wired  # noqa: F401  # wired: a fixture

ADMIN = "mbtest_asgi_admin_0123456789abcdef"
HANG_GUARD_S = 60  # every test here answers in about a second; this only turns a hang into a failure


@pytest.fixture
def no_async_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of Powertools' sync-middleware-on-executor bridge fails the request loudly."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("AsyncMiddlewareFrame used")

    monkeypatch.setattr(async_utils.AsyncMiddlewareFrame, "__call__", refuse)


def make_app(container: Any, workers: int) -> Any:
    container.keys.create(["admin"], name="asgi admin", secret=ADMIN)
    return build_app(partial(ThreadedHttpResolver, workers=workers), lambda: container)  # type: ignore[arg-type]


def test_many_more_concurrent_requests_than_workers_all_answer(container: Any, no_async_bridge: None) -> None:
    app = make_app(container, workers=2)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    # (method, path, json body, headers, expected status): success, 401, 400 and 404 paths alike
    kinds = [("GET", "/v1/health", None, {}, 200), ("GET", "/v1/openapi.json", None, {}, 200),
             ("GET", "/v1/meters", None, auth, 200), ("GET", "/v1/meters", None, {}, 401),
             ("PUT", "/v1/meters/x", {"aggregation": "sum"}, auth, 400), ("GET", "/v1/nowhere", None, auth, 404)]
    requests = [kind for _ in range(8) for kind in kinds]
    requests += [("POST", "/v1/events", {"events": [ev(f"asgi-{i}", customer="nobody")]}, auth, 200) for i in range(8)]

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            calls = [client.request(m, p, json=body, headers=h) for m, p, body, h, _ in requests]
            return list(await asyncio.wait_for(asyncio.gather(*calls), HANG_GUARD_S))

    responses = asyncio.run(go())
    assert [(m, p, r.status_code) for (m, p, *_), r in zip(requests, responses)] == [
        (m, p, status) for m, p, _, _, status in requests]
    assert sum(r.json().get("accepted", 0) for r in responses) == 8
    assert all("/v1/events" in r.json()["paths"] for (_, p, *_), r in zip(requests, responses) if p == "/v1/openapi.json")


def test_each_request_runs_its_whole_chain_on_one_worker_with_its_own_state(container: Any,
                                                                            no_async_bridge: None) -> None:
    workers = 4
    app = make_app(container, workers=workers)
    together = threading.Barrier(workers, timeout=HANG_GUARD_S)  # passes only if `workers` handlers overlap
    loop_threads: set[int] = set()

    def note_thread(app: Any, next_middleware: Callable[..., Response]) -> Response:
        app.append_context(middleware_thread=threading.get_ident())
        return next_middleware(app)

    app.use(middlewares=[note_thread])

    @app.get("/v1/probe/<n>")
    def probe(n: str) -> dict[str, Any]:
        together.wait()
        return {"n": n, "path": app.current_event.path, "handler_thread": threading.get_ident(),
                "middleware_thread": app.context["middleware_thread"],
                "has_container": app.context.get("container") is container}

    async def go() -> list[httpx.Response]:
        loop_threads.add(threading.get_ident())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            calls = [client.get(f"/v1/probe/{n}", headers={"Authorization": f"Bearer {ADMIN}"})
                     for n in range(workers)]
            return list(await asyncio.wait_for(asyncio.gather(*calls), HANG_GUARD_S))

    docs = [r.json() for r in asyncio.run(go())]
    assert [(d["n"], d["path"], d["has_container"]) for d in docs] == [
        (str(n), f"/v1/probe/{n}", True) for n in range(workers)]
    assert all(d["handler_thread"] == d["middleware_thread"] for d in docs)
    assert len({d["handler_thread"] for d in docs}) == workers
    assert not loop_threads & {d["handler_thread"] for d in docs}


def test_close_answers_queued_requests_503_and_lets_the_running_one_finish(container: Any) -> None:
    app = make_app(container, workers=1)
    entered, release = threading.Event(), threading.Event()

    @app.get("/v1/slow")
    def slow() -> dict[str, Any]:
        entered.set()
        release.wait(HANG_GUARD_S)
        return {"done": True}

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            auth = {"Authorization": f"Bearer {ADMIN}"}
            running = asyncio.ensure_future(client.get("/v1/slow", headers=auth))
            await asyncio.to_thread(entered.wait, HANG_GUARD_S)  # the one worker is busy with it
            queued = [asyncio.ensure_future(client.get("/v1/health")) for _ in range(3)]
            await asyncio.sleep(0)  # let them reach the pool's queue
            while len(app._in_flight) < 4:
                await asyncio.sleep(0.01)
            closed = asyncio.ensure_future(asyncio.to_thread(app.close, HANG_GUARD_S))
            answers = list(await asyncio.wait_for(asyncio.gather(*queued), HANG_GUARD_S))
            release.set()
            assert await asyncio.wait_for(closed, HANG_GUARD_S) is True
            return [await asyncio.wait_for(running, HANG_GUARD_S), *answers]

    running, *queued = asyncio.run(go())
    assert (running.status_code, running.json()) == (200, {"done": True})
    for r in queued:
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["error"]["code"] == "unavailable"


# -- Lambda: functions/api.py resolves on the invoking thread, without the async bridge ------------
def forget_lambda_api() -> None:
    import functions

    sys.modules.pop("functions.api", None)
    vars(functions).pop("api", None)


@pytest.fixture
def lambda_api(wired: Any) -> Iterator[Any]:  # noqa: F811  # wired: the fixture imported above
    """functions/api.py imported afresh, and forgotten afterwards. Its module-level app is built on
    import, and the shared Router serves the app built last: a module kept from here would serve
    through whichever app a later test builds."""
    forget_lambda_api()
    yield importlib.import_module("functions.api")
    forget_lambda_api()


def test_lambda_api_handler_resolves_without_the_async_bridge(lambda_api: Any, no_async_bridge: None) -> None:
    resp = lambda_api.handler(recorded("apigw_get_invoices.json"), ctx("meterbill-api"))
    assert resp["statusCode"] == 200, resp
    assert json.loads(resp["body"])["data"] == []
