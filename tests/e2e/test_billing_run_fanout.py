"""A billing run through the local stack's close queue with a close worker of its own process,
killed (SIGKILL) mid-run: another worker finishes the run, nothing is lost or invoiced twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.e2e.stack import iso, last_month_start, running_stack

pytestmark = pytest.mark.e2e
CUSTOMERS = int(os.environ.get("E2E_FANOUT_CUSTOMERS", "40"))


def worker(cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "meterbill.cli", "close-worker"], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.timeout(400)
def test_killing_a_close_worker_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # no worker threads in the stack: the run's messages wait for the worker processes below;
    # a killed worker's messages come back after 3 s
    with running_stack(tmp_path, METERBILL_CLOSE_WORKERS="0", METERBILL_CLOSE_VISIBILITY_S="3") as (s, _):
        start = last_month_start(datetime.now(timezone.utc))
        s.ok("PUT", "/v1/plans/fan_plan", {"currency": "USD", "interval": "month", "base_fee": "7.00", "charges": []})
        ids = [f"fan-{os.getpid()}-{i:03d}" for i in range(CUSTOMERS)]
        for cid in ids:
            s.ok("PUT", f"/v1/customers/{cid}", {"name": cid, "plan": "fan_plan", "started_at": iso(start),
                                                 "billing_anchor": iso(start)})
        status, _, run = s.call("POST", "/v1/billing-runs", {})
        assert status == 202 and run["status"] == "dispatching", run
        first = worker(tmp_path, s.env, tmp_path / "worker1.log")
        try:
            deadline = time.monotonic() + 120
            while (view := s.ok("GET", f"/v1/billing-runs/{run['id']}"))["closed"] < CUSTOMERS // 4:
                assert time.monotonic() < deadline and first.poll() is None, (view, s.log_tail())
                time.sleep(0.05)
        finally:
            os.killpg(first.pid, signal.SIGKILL)          # mid-run, mid-batch
            first.wait(timeout=10)
        killed_at = s.ok("GET", f"/v1/billing-runs/{run['id']}")
        assert killed_at["status"] == "running" and killed_at["closed"] < CUSTOMERS, killed_at
        second = worker(tmp_path, s.env, tmp_path / "worker2.log")
        try:
            done = s.wait_finished(run["id"], timeout=240)
        finally:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(timeout=10)
        assert (done["queued"], done["closed"], done["failed"], done["waiting"]) == (CUSTOMERS, CUSTOMERS, 0, 0)
        invoices, cursor = [], None
        while True:
            page = s.ok("GET", "/v1/invoices?limit=100" + (f"&cursor={cursor}" if cursor else ""))
            invoices += [i for i in page["data"] if i["customer_id"] in ids]
            if not (cursor := page["next_cursor"]):
                break
        assert sorted(i["customer_id"] for i in invoices) == sorted(ids)          # each customer once
        numbers = sorted(int(i["number"].removeprefix("INV-")) for i in invoices)
        assert numbers == list(range(1, CUSTOMERS + 1))                           # gapless, unique
        print(f"killed the first worker after {killed_at['closed']} of {CUSTOMERS} closes; the second finished")
