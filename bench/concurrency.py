"""Throughput of the real local stack (`meterbill run`: uvicorn + our app + moto's server) with 1, 8
and 32 clients at once, each on its own keep-alive connection, sending requests back to back.

Two workloads per level: 1,000-event ingest batches (events/s: the issue-12 workload, which
used to stall the server) and 1-event ingests (requests/s: the per-request cost). The stream
poller aggregates in the background meanwhile, as under `make run`. Measures our stack + moto
(the local DynamoDB stand-in, one process), not API Gateway + Lambda + AWS.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench import report
from bench import workload as w
from bench.http import _Client, _events, local_stack, wait_healthy

LEVELS = (1, 8, 32)
BATCH = 1000
BATCHES = {1: 4, 8: 16, 32: 32}          # 1,000-event requests per level (32: one per client)
SMALL = {1: 100, 8: 200, 32: 320}         # 1-event requests per level


def run() -> None:
    with local_stack() as (port, key, proc, log_path):
        who = _ready(port, key, proc, log_path)
        for clients in LEVELS:
            _level(port, key, who, clients)


def _ready(port: int, key: str, proc: Any, log_path: Path) -> list[str]:
    client = _Client(port, key)
    try:
        wait_healthy(proc, client, log_path)
        who = w.customers()
        client.ok("PUT", "/v1/meters/llm_tokens", w.METERS["llm_tokens"])
        client.ok("PUT", "/v1/plans/bench_pro", {
            "currency": "USD", "interval": "month", "base_fee": "49.00", "charges": [
                {"meter": "llm_tokens", "model": "per_unit", "unit_amount": "0.00002"}]})
        for c in who:
            client.ok("PUT", f"/v1/customers/{c}", {"name": f"Bench {c}", "plan": "bench_pro"})
        for n in (1, BATCH):  # warm-up: first calls of the route, connection pools
            status, data, _ = client.call("POST", "/v1/events", _events(n, who))
            if status != 200:
                raise RuntimeError(f"warm-up POST /v1/events -> {status}: {data[:300]!r}")
        return who
    finally:
        client.close()


def _level(port: int, key: str, who: list[str], clients: int) -> None:
    for events, total, unit in ((BATCH, BATCHES[clients], "events/s"), (1, SMALL[clients], "requests/s")):
        bodies = [_events(events, who) for _ in range(total)]  # built before the clock starts
        seconds, latencies = _burst(port, key, bodies, clients)
        name = f"http_throughput_{unit.split('/')[0]}_per_s_{clients}_clients"
        report(name, total * events / seconds, unit,
               note=f"{total} x {events}-event ingests over {clients} connection(s) in {seconds:.1f} s; "
                    f"{total / seconds:.1f} requests/s; latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
                    f"max {max(latencies) * 1000:.0f} ms")


def _burst(port: int, key: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    """All ``bodies`` POSTed by ``clients`` threads at once, each taking the next body when its
    last answer came; (wall seconds from the start to the last answer, per-request seconds)."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    gate = threading.Barrier(clients + 1)

    def client() -> None:
        c = _Client(port, key)
        try:
            gate.wait()
            while True:
                with lock:
                    if not queue or errors:
                        return
                    body = queue.pop()
                status, data, seconds = c.call("POST", "/v1/events", body)
                with lock:
                    latencies.append(seconds)
                    if status != 200:
                        errors.append(f"POST /v1/events -> {status}: {data[:300]!r}")
        except Exception as exc:  # noqa: BLE001  # reported below, in the main thread
            with lock:
                errors.append(repr(exc))
        finally:
            c.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed; first: {errors[0]}")
    return seconds, latencies
