"""A locust load test of the local stack (`meterbill run`: uvicorn + our app + moto's server):
20 concurrent users post batches of fresh events to POST /v1/events back to back for a bounded
time. Locust runs headless in a subprocess (its gevent monkey-patching stays out of this process).

Measures our stack + moto (the local DynamoDB stand-in, one process) on the same 2 cores as the
load generator, not API Gateway + Lambda + DynamoDB. Any failed request fails the benchmark.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from bench import FAKE_AWS, report
from bench.concurrency import _ready
from bench.http import local_stack

REPO = Path(__file__).resolve().parent.parent
USERS = 20
SECONDS = int(os.environ.get("METERBILL_LOAD_SECONDS", "30"))
BATCH = int(os.environ.get("METERBILL_LOAD_BATCH", "100"))


def run() -> None:
    with local_stack() as (port, key, proc, log_path):
        who = _ready(port, key, proc, log_path)  # meter, plan, 50 customers; the route warmed up
        stats = _locust(port, key, who, log_path.parent)
    _report(stats)


def _locust(port: int, key: str, who: list[str], workdir: Path) -> dict[str, str]:
    exe = Path(sys.executable).with_name("locust")
    prefix = workdir / "load"
    env = {**os.environ, **FAKE_AWS, "PYTHONPATH": str(REPO), "METERBILL_LOAD_KEY": key,
           "METERBILL_LOAD_BATCH": str(BATCH), "METERBILL_LOAD_CUSTOMERS": ",".join(who)}
    cmd = [str(exe), "-f", str(REPO / "bench" / "locustfile.py"), "--headless", "--users", str(USERS),
           "--spawn-rate", str(USERS), "--run-time", f"{SECONDS}s", "--stop-timeout", "120",
           "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SECONDS + 300, check=False)
    rows = list(csv.DictReader((prefix.parent / f"{prefix.name}_stats.csv").open()))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    if int(total["Failure Count"]) or out.returncode not in (0, 1):
        failures = (prefix.parent / f"{prefix.name}_failures.csv").read_text()[:1500]
        raise RuntimeError(f"load test: {total['Failure Count']} failed request(s) of {total['Request Count']} "
                           f"(locust exit {out.returncode}):\n{failures}\n{out.stderr[-1500:]}")
    if out.returncode != 0:
        raise RuntimeError(f"locust exited {out.returncode}: {out.stderr[-1500:]}")
    return total


def _report(total: dict[str, str]) -> None:
    requests = int(total["Request Count"])
    per_s = float(total["Requests/s"])
    setup = f"{USERS} locust users, {BATCH}-event batches back to back, {SECONDS} s (METERBILL_LOAD_SECONDS)"
    report("load_events_per_s", per_s * BATCH, "events/s",
           note=f"{setup}; {requests} requests, {per_s:.1f} requests/s; local stack on moto")
    report("load_p50_ms", float(total["50%"]), "ms", note="per request (locust's rounded percentiles)")
    report("load_p99_ms", float(total["99%"]), "ms", note=f"max {float(total['Max Response Time']):.0f} ms")
    report("load_errors", int(total["Failure Count"]), "requests", "0",
           note="anything but 200; the benchmark fails on any")
