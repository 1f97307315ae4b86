"""`meterbill run`: start the whole product locally on its embedded default stack."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
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


def banner(url: str, admin_key: str | None, close_every: float) -> str:
    """What `meterbill run` prints once it serves: where, the key, what happens to the data."""
    lines = [f"meterbill is running at {url}  (API docs: {url}/v1/docs)"]
    if admin_key:
        lines.append(f"admin API key (generated): {admin_key}")
    lines.append(f"periods close every {close_every:g} s" if close_every > 0 else "period timer off")
    lines.append("data is kept in memory only (embedded moto server): everything is lost when meterbill stops")
    demo = stack.cli_command("demo")  # `meterbill` itself is rarely on PATH: .venv/bin is not activated
    if _our_makefile():
        demo = f"make demo  (or: {demo})"
    lines.append(f"try:  {demo}        stop: Ctrl-C")
    return "\n".join(lines)


def _our_makefile() -> bool:
    try:
        return "meterbill demo" in Path("Makefile").read_text(errors="replace")
    except OSError:
        return False


def start_integrations() -> list[Any]:
    """The vendors of METERBILL_INTEGRATIONS (meterbill/local/vendors.py): Prism on each one's spec
    in front of its stand-in, the SDKs pointed at it. A vendor that cannot start (no spec, no Prism)
    is said so and left out of METERBILL_INTEGRATIONS; the rest of the stack starts anyway."""
    from meterbill.integration.settings import enabled_integrations
    from meterbill.local.vendors import start_vendors

    names = enabled_integrations(os.environ)
    if not names:
        return []
    started, skipped = start_vendors(names)
    for message in skipped:
        print(f"meterbill: {message}", flush=True)
        log.warning("%s", message)
    if skipped:
        left_out = {m.split(":", 1)[0] for m in skipped}
        os.environ["METERBILL_INTEGRATIONS"] = ",".join(n for n in names if n not in left_out)
    return started


def stop_integrations(vendors: list[Any]) -> None:
    from meterbill.local.vendors import stop_vendors

    stop_vendors(vendors)


def run() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:  # lines not logged through Powertools: bounded too
        handler.setFormatter(stack.BoundedTextFormatter("%(asctime)s %(name)s %(message)s"))
    port = int(os.environ.get("METERBILL_PORT", "8000"))
    close_every = float(os.environ.get("METERBILL_CLOSE_EVERY", "60"))
    close_workers = int(os.environ.get("METERBILL_CLOSE_WORKERS", "4"))
    listener = stack.claim_port(port)  # before anything starts or is written (raises PortInUse)
    moto_port = int(os.environ.get("METERBILL_MOTO_PORT") or stack.free_port())
    endpoint = f"http://127.0.0.1:{moto_port}"
    stack.stop_on_signals()
    moto = None
    vendors: list[Any] = []
    app = None
    stop = threading.Event()
    stopped = False
    state: dict[str, Any] | None = None
    try:
        moto = stack.start_moto(moto_port)
        os.environ.setdefault("METERBILL_PORTAL_BASE_URL", f"http://127.0.0.1:{port}")  # portal links
        stack.prepare_environment(endpoint)
        stack.create_tables(endpoint)
        queue_url = stack.create_queues(endpoint)["CloseQueue"]
        vendors = start_integrations()   # Prism in front of each enabled vendor's stand-in
        import uvicorn

        from functions import aggregator, close_periods
        from meterbill.api.app import build_app
        from meterbill.api.asgi import ThreadedHttpResolver
        from meterbill.bootstrap import default_container, label_thread

        container = default_container()
        admin_key = os.environ.get("METERBILL_ADMIN_KEY") or f"mb_{secrets.token_urlsafe(24)}"
        container.keys.create(["admin"], name="local admin", secret=admin_key)
        poller = stack.StreamPoller(endpoint, container.settings.events_table, aggregator.handler)

        queue = stack.close_queue_worker(endpoint, queue_url)
        # the integrations (METERBILL_INTEGRATIONS): outbox stream -> fan-out -> each sync queue -> dispatch
        outbox = stack.outbox_poller(endpoint, container.settings.billing_table)
        syncs = stack.sync_workers(endpoint, container)

        def close_tick() -> None:
            poller.drain()  # what Lambda's stream mapping would have applied by now
            tick = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")   # as EventBridge Scheduler names it
            run = close_periods.handler({"scheduled_time": tick}, stack.LambdaContext("close_periods"))
            if run["queued"]:
                log.info("billing run %s: %s customer tasks queued", run["id"], run["queued"])

        threads = [threading.Thread(target=_loop, args=(stop, 0.25, poller.drain, "stream poller"), daemon=True)]
        # the close queue's event source mapping: workers long-poll and invoke the close worker's handler
        threads += [threading.Thread(target=_loop, args=(stop, 0, lambda: queue.poll_once(wait_s=1), "close worker"),
                                     name=f"close-worker-{i}", daemon=True) for i in range(close_workers)]
        if container.settings.integrations:
            threads.append(threading.Thread(target=_loop, args=(stop, 0.5, outbox.drain, "outbox fan-out"), daemon=True))
        threads += [threading.Thread(target=_loop, args=(stop, 0, (lambda w: lambda: w.poll_once(wait_s=1))(w),
                                                         "sync dispatch"), name=f"dispatch-{i}", daemon=True)
                    for i, w in enumerate(syncs)]
        if close_every > 0:
            threads.append(threading.Thread(target=_loop, args=(stop, close_every, close_tick, "close"), daemon=True))
            # the dunning schedule (functions/dunning.py), on the close timer's period
            threads.append(threading.Thread(target=_loop, args=(stop, close_every, stack.dunning_tick, "dunning"),
                                            daemon=True))
        for t in threads:
            t.start()
        url = f"http://127.0.0.1:{port}"
        generated = None if os.environ.get("METERBILL_ADMIN_KEY") else admin_key
        state = {"api_url": url, "dynamodb_endpoint": endpoint, "admin_key": generated, "close_queue_url": queue_url}
        stack.write_state(state)
        if vendors:
            state["integrations"] = {v.vendor.name: v.url for v in vendors}
            stack.write_state(state)
        print(banner(url, generated, close_every), flush=True)
        for v in vendors:
            print(f"{v.vendor.name}: Prism validating against {v.vendor.spec} at {v.url}", flush=True)
        app = build_app(ThreadedHttpResolver, default_container)
        # Requests run on the HTTP server's threads, which copy this thread's context: their log
        # lines say function_name "api", as on Lambda (the aggregator's and the timer's say theirs).
        label_thread("api")
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                      timeout_graceful_shutdown=STOP_GRACE_S)).run(sockets=[listener])
        stopped = True
    except stack.StopRequested:
        stopped = True  # uvicorn has stopped serving (and answered or dropped what was in flight)
    finally:
        stack.ignore_signals()  # a second Ctrl-C must not cut the cleanup short; it is bounded anyway
        stop.set()
        if app is not None and not app.close(timeout=1):
            log.warning("stopping without the requests still running (their clients were answered 503)")
        stack.stop_process(moto)
        stop_integrations(vendors)
        listener.close()
        if state is not None:
            stack.clear_state(state)
        print("meterbill stopped", flush=True)
        stack.exit_within(2, code=0 if stopped else 1)
