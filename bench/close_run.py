"""A billing run end to end on the local stack (`meterbill run`: moto's server, the close queue
and its worker threads calling the close worker's Lambda handler): N customers with an ended
period, ``POST /v1/billing-runs`` (202), then ``GET`` until the run is finished.

close_local_run_customers_per_s = N / wall time from the POST to ``finished`` (dispatch with its
usage-watermark wait, SendMessageBatch, the workers' closes and outcome transactions). Customers
are created first, over the API with 8 clients, untimed. Scale with BENCH_CLOSE_CUSTOMERS
(default 50) and BENCH_CLOSE_WORKERS (the stack's worker threads, default 4, as `meterbill run`).

The issue's figure is a run over 10,000 customers (BENCH_CLOSE_CUSTOMERS=10000, about an hour on this
2-core host: seeding over the API plus the run); the default stays small so `make bench` finishes. A long
run prints its progress to stderr every minute. Before `patch_moto` (meterbill/local/moto_server.py) moto's
TransactWriteItems deep-copied whole tables per transaction and a run was O(N^2). Measures our code + moto
in one process tree on this machine, not SQS + Lambda + DynamoDB.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench import report
from bench.http import _Client, _free_port, _start, _stop, wait_healthy

CUSTOMERS = int(os.environ.get("BENCH_CLOSE_CUSTOMERS", "50"))
WORKERS = int(os.environ.get("BENCH_CLOSE_WORKERS", "4"))
SEEDERS = 8


def _month_starts(now: datetime) -> tuple[str, str]:
    this = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last = (this - timedelta(days=1)).replace(day=1)
    return last.strftime("%Y-%m-%dT%H:%M:%SZ"), this.strftime("%Y-%m-%dT%H:%M:%SZ")


def run() -> None:
    port, moto_port = _free_port(), _free_port()
    key = "mb_bench_" + secrets.token_urlsafe(24)
    saved = os.environ.get("METERBILL_CLOSE_WORKERS")
    os.environ["METERBILL_CLOSE_WORKERS"] = str(WORKERS)
    try:
        with tempfile.TemporaryDirectory(prefix="meterbill-bench-") as workdir:
            log_path = Path(workdir) / "stack.log"
            with open(log_path, "wb") as log:
                proc = _start(port, moto_port, key, workdir, log)
                try:
                    _measure(port, key, proc, log_path)
                except Exception:
                    print(f"# close_run: the stack's log ends with:\n{log_path.read_text()[-4000:]}", flush=True)
                    raise
                finally:
                    _stop(proc, (port, moto_port))
    finally:
        if saved is None:
            os.environ.pop("METERBILL_CLOSE_WORKERS", None)
        else:
            os.environ["METERBILL_CLOSE_WORKERS"] = saved


def _measure(port: int, key: str, proc: object, log_path: Path) -> None:
    client = _Client(port, key)
    wait_healthy(proc, client, log_path)  # type: ignore[arg-type]
    start, end = _month_starts(datetime.now(timezone.utc))
    client.ok("PUT", "/v1/plans/bench_close", {"currency": "USD", "interval": "month", "base_fee": "49.00",
                                                "charges": []})
    t0 = time.perf_counter()
    _seed(port, key, start)
    seeded = time.perf_counter() - t0
    t0 = time.perf_counter()
    status, data, _ = client.call("POST", "/v1/billing-runs", json.dumps({"as_of": end}).encode())
    if status != 202:
        raise RuntimeError(f"POST /v1/billing-runs -> {status}: {data[:300]!r}")
    answered = time.perf_counter() - t0
    run = json.loads(data)
    retried = 0
    shown = time.perf_counter()
    while run["status"] != "finished":
        time.sleep(1)
        if time.perf_counter() - shown >= 60:   # a long run says where it is (stderr: not a figure)
            shown = time.perf_counter()
            print(f"# close_run: {shown - t0:.0f} s, queued {run.get('queued')}, closed {run.get('closed')}, "
                  f"waiting {run.get('waiting')}, failed {run.get('failed')}", file=sys.stderr, flush=True)
        status, data, _ = client.call("GET", f"/v1/billing-runs/{run['id']}")
        if status >= 500 and retried < 100:   # moto busy (its transactions copy the table): ask again
            retried += 1
            continue
        if status != 200:
            raise RuntimeError(f"GET /v1/billing-runs/{run['id']} -> {status}: {data[:300]!r}")
        run = json.loads(data)
    wall = time.perf_counter() - t0
    client.close()
    if (run["queued"], run["closed"]) != (CUSTOMERS, CUSTOMERS):
        raise RuntimeError(f"run ended with {json.dumps(run)}")
    report("close_local_run_customers_per_s", CUSTOMERS / wall, "customers/s",
           note=f"{CUSTOMERS} customers through the close queue, {WORKERS} local worker threads, moto; "
                f"POST answered 202 in {answered * 1000:.0f} ms; customers seeded in {seeded:.0f} s; "
                f"{retried} progress reads answered 5xx by the busy stack")
    report("close_local_run_wall_s", wall, "s", note=f"{CUSTOMERS} customers, from the POST to finished")


def _seed(port: int, key: str, start: str) -> None:
    ids = [f"bc{i:06d}" for i in range(CUSTOMERS)]
    lock = threading.Lock()
    errors: list[str] = []

    def seeder() -> None:
        client = _Client(port, key)
        try:
            while True:
                with lock:
                    if not ids or errors:
                        return
                    cid = ids.pop()
                status, data, _ = client.call("PUT", f"/v1/customers/{cid}", json.dumps(
                    {"name": cid, "plan": "bench_close", "started_at": start, "billing_anchor": start}).encode())
                if status != 200:
                    with lock:
                        errors.append(f"PUT /v1/customers/{cid} -> {status}: {data[:200]!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=seeder) for _ in range(SEEDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
