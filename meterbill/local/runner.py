"""`meterbill run`: start the whole product locally on its embedded default stack."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from typing import Any

from meterbill.local import stack

log = logging.getLogger("meterbill.local")
# Once a stop is asked (SIGINT, SIGTERM), requests in flight get this long to answer; those still
# waiting then are answered 503 (retry), and those still running are abandoned a second later.
STOP_GRACE_S = 3


def _loop(stop: threading.Event, every: float, work: Any, name: str) -> None:
    while not stop.wait(every):
        try:
            work()
        except Exception:  # keep the local stack alive; the error is logged
            log.exception("%s failed", name)


def run() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    port = int(os.environ.get("METERBILL_PORT", "8000"))
    close_every = float(os.environ.get("METERBILL_CLOSE_EVERY", "60"))
    moto_port = int(os.environ.get("METERBILL_MOTO_PORT") or stack.free_port())
    endpoint = f"http://127.0.0.1:{moto_port}"
    stack.stop_on_signals()
    moto = None
    app = None
    stop = threading.Event()
    stopped = False
    try:
        moto = stack.start_moto(moto_port)
        stack.prepare_environment(endpoint)
        stack.create_tables(endpoint)
        import uvicorn

        from functions import aggregator, close_periods
        from meterbill.api.app import build_app
        from meterbill.api.asgi import ThreadedHttpResolver
        from meterbill.bootstrap import default_container

        container = default_container()
        admin_key = os.environ.get("METERBILL_ADMIN_KEY") or f"mb_{secrets.token_urlsafe(24)}"
        container.keys.create(["admin"], name="local admin", secret=admin_key)
        poller = stack.StreamPoller(endpoint, container.settings.events_table, aggregator.handler)

        def close_tick() -> None:
            poller.drain()  # what Lambda's stream mapping would have applied by now
            summary = close_periods.handler({"source": "local-timer"}, stack.LambdaContext("close"))
            if summary["invoices_created"]:
                log.info("closed periods: %s", summary)

        threads = [threading.Thread(target=_loop, args=(stop, 0.25, poller.drain, "stream poller"), daemon=True)]
        if close_every > 0:
            threads.append(threading.Thread(target=_loop, args=(stop, close_every, close_tick, "close"), daemon=True))
        for t in threads:
            t.start()
        url = f"http://127.0.0.1:{port}"
        stack.write_state({"api_url": url, "dynamodb_endpoint": endpoint,
                           "admin_key": None if os.environ.get("METERBILL_ADMIN_KEY") else admin_key})
        print(f"meterbill is running at {url}  (API docs: {url}/v1/docs)", flush=True)
        if not os.environ.get("METERBILL_ADMIN_KEY"):
            print(f"admin API key (generated): {admin_key}", flush=True)
        print(f"periods close every {close_every:g} s" if close_every > 0 else "period timer off", flush=True)
        print("try:  meterbill demo        stop: Ctrl-C", flush=True)
        app = build_app(ThreadedHttpResolver, default_container)
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                      timeout_graceful_shutdown=STOP_GRACE_S)).run()
        stopped = True
    except stack.StopRequested:
        stopped = True  # uvicorn has stopped serving (and answered or dropped what was in flight)
    finally:
        stack.ignore_signals()  # a second Ctrl-C must not cut the cleanup short; it is bounded anyway
        stop.set()
        if app is not None and not app.close(timeout=1):
            log.warning("stopping without the requests still running (their clients were answered 503)")
        stack.stop_process(moto)
        print("meterbill stopped", flush=True)
        stack.exit_within(2, code=0 if stopped else 1)
