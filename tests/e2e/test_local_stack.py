"""End to end: the real local product started as a newcomer starts it (`meterbill run`), driven
over HTTP only, with its own moto server, stream poller and period-closing timer."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.e2e.stack import ADMIN_KEY, Stack, accepts, iso, last_month_start, running_stack

pytestmark = pytest.mark.e2e
STOP_TIMEOUT_S = 15

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cwd = tmp_path_factory.mktemp("newcomer")
    # the service name of template.yaml and `make run` (tests/conftest.py sets another for in-process tests)
    with running_stack(cwd, METERBILL_CLOSE_EVERY="2", POWERTOOLS_SERVICE_NAME="meterbill") as (s, moto_port):
        state = json.loads((cwd / ".meterbill" / "local.json").read_text())
        assert state["api_url"] == s.url
        assert state["admin_key"] is None  # an admin key from the environment is never written to disk
        assert accepts(moto_port)
        yield s
        # Ctrl-C, as a newcomer stops it
        os.killpg(s.proc.pid, signal.SIGINT)
        try:
            code = s.proc.wait(timeout=STOP_TIMEOUT_S)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped, code = False, None
        moto_alive = accepts(moto_port)
    assert stopped, f"`meterbill run` still running {STOP_TIMEOUT_S} s after SIGINT:\n{s.log_tail()}"
    assert not moto_alive, f"moto server on port {moto_port} outlived `meterbill run` (exit {code})"
    assert "meterbill stopped" in s.log.read_text(errors="replace")


def test_demo_prints_matching_invoice(stack: Stack) -> None:
    res = subprocess.run([sys.executable, "-m", "meterbill.cli", "demo", "--url", stack.url, "--key", ADMIN_KEY,
                          "--events", "1500"], cwd=stack.cwd, env=stack.env, capture_output=True, text=True,
                         timeout=90)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out + "\n--- stack log ---\n" + stack.log_tail()
    print(out)
    assert "MATCH" in out and "MISMATCH" not in out, out
    assert re.search(r"INVOICE \S+", out), out
    assert "re-sent 500 -> 500 duplicates" in out, out


def test_timer_closes_an_ended_period_by_itself(stack: Stack) -> None:
    start = last_month_start(datetime.now(timezone.utc))
    customer = f"e2e-timer-{os.getpid()}"
    stack.ok("PUT", "/v1/meters/e2e_units", {"event_type": "e2e.work", "aggregation": "sum", "property": "units"})
    stack.ok("PUT", "/v1/plans/e2e_plan", {"currency": "EUR", "interval": "month", "base_fee": "10.00",
                                           "charges": [{"meter": "e2e_units", "model": "per_unit",
                                                        "unit_amount": "0.25"}]})
    events = [{"id": f"{customer}-{i}", "customer": customer, "type": "e2e.work",
               "timestamp": iso(start + timedelta(days=i % 20, hours=i)), "properties": {"units": i}}
              for i in range(1, 21)]
    # Events first, then the customer: the 2-second timer may close the period as soon as the
    # customer exists, and every event must already be stored by then (they wait as pending).
    sent = stack.ok("POST", "/v1/events", {"events": events})
    assert (sent["accepted"], sent["pending"]) == (20, [e["id"] for e in events])
    stack.ok("PUT", f"/v1/customers/{customer}", {
        "name": "Timer GmbH", "email": "ap@timer.example", "plan": "e2e_plan", "started_at": iso(start),
        "billing_anchor": iso(start), "payment_terms_days": 10,
        "address": {"line1": "Hauptstr. 1", "city": "Berlin", "country": "DE"}})
    deadline = time.monotonic() + 90  # generous: CI shares 2 cores
    invoices: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        # only this month's: should the month end during the test, the timer closes the next one too
        invoices = [i for i in stack.ok("GET", f"/v1/invoices?customer={customer}")["data"]
                    if i["period"]["start"] == iso(start)]
        if invoices and invoices[0]["status"] != "finalizing":  # committed, then numbered by the sequencer
            break
        time.sleep(0.5)
    assert len(invoices) == 1, f"no invoice within 90 s:\n{stack.log_tail()}"
    inv = invoices[0]
    # 1 + 2 + ... + 20 = 210 units x 0.25 = 52.50, plus the 10.00 base fee
    assert (inv["currency"], inv["subtotal"], inv["total"]) == ("EUR", "62.50", "62.50")
    assert inv["period"]["start"] == iso(start)
    assert inv["customer"]["name"] == "Timer GmbH" and inv["status"] == "final"
    assert [(ln.get("meter"), ln.get("quantity"), ln["amount"]) for ln in inv["lines"]] == [
        (None, None, "10.00"), ("e2e_units", "210", "52.50")]
    log_deadline = time.monotonic() + 30
    while inv["id"] not in stack.log.read_text(errors="replace") and time.monotonic() < log_deadline:
        time.sleep(0.2)
    assert inv["id"] in stack.log.read_text(errors="replace"), "the timer did not log the close"
    time.sleep(2.5)  # another tick: still exactly one invoice
    assert len([i for i in stack.ok("GET", f"/v1/invoices?customer={customer}")["data"]
                if i["period"]["start"] == iso(start)]) == 1


def test_openapi_document_is_served(stack: Stack) -> None:
    status, hdrs, doc = stack.call("GET", "/v1/openapi.json", key=None)
    assert status == 200, doc
    assert "/v1/events" in doc["paths"] and "post" in doc["paths"]["/v1/events"]
    status, hdrs, html = stack.call("GET", "/v1/docs", key=None)
    assert status == 200 and "swagger" in html.lower()


def test_401_without_key_and_403_with_ingest_key_from_cli(stack: Stack) -> None:
    status, hdrs, doc = stack.call("GET", "/v1/invoices", key=None)
    assert status == 401 and doc["error"]["code"] == "unauthorized"
    assert hdrs["www-authenticate"].startswith("Bearer")
    res = subprocess.run([sys.executable, "-m", "meterbill.cli", "keys", "create", "--scope", "ingest",
                          "--name", "e2e ingest"], cwd=stack.cwd, env=stack.env, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    created = json.loads(res.stdout)
    key = created["key"]
    assert created["scopes"] == ["ingest"] and len(key) >= 16
    for method, path, body in [("GET", "/v1/invoices", None),
                               ("PUT", "/v1/meters/e2e_forbidden", {"event_type": "x", "aggregation": "count"}),
                               ("POST", "/v1/billing-runs", {})]:
        status, _, doc = stack.call(method, path, body, key=key)
        assert status == 403 and doc["error"]["code"] == "forbidden", (method, path, status, doc)
        assert key not in json.dumps(doc)
    status, _, doc = stack.call("POST", "/v1/events", {"events": [
        {"id": "e2e-ingest-1", "customer": "nobody-yet", "type": "x", "timestamp": iso(datetime.now(timezone.utc)),
         "properties": {}}]}, key=key)
    assert status == 200 and doc["accepted"] == 1, doc
    status, _, doc = stack.call("GET", "/v1/invoices", key="mb_wrong_key_0123456789abcdef")
    assert status == 401
    assert key not in stack.log.read_text(errors="replace")  # no key material in the logs
    assert ADMIN_KEY not in stack.log.read_text(errors="replace")


def test_banner_names_a_command_that_exists_and_says_data_is_in_memory(stack: Stack) -> None:
    banner = stack.log.read_text(errors="replace")
    assert "data is kept in memory only" in banner and "lost when meterbill stops" in banner, banner
    try_line = next(line for line in banner.splitlines() if line.startswith("try:"))
    command = try_line[len("try:"):].split("stop:")[0].strip()
    command = command.split("(or: ")[-1].rstrip(")") if "(or: " in command else command
    program = command.split()[0]
    # the test's own PATH without this interpreter's bin directory: as a shell without .venv activated
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).resolve() != Path(sys.executable).parent.resolve())
    found = shutil.which(program, path=path) if "/" not in program else str(stack.cwd / program)
    assert found and os.access(found, os.X_OK), f"`{command}` from the banner cannot be run: {try_line}"
    assert command.endswith(" demo")


def test_concurrent_clients_do_not_overflow_the_connection_pool(stack: Stack) -> None:
    now = iso(datetime.now(timezone.utc) - timedelta(hours=1))

    def client(c: int) -> int:
        events = [{"id": f"e2e-pool-{os.getpid()}-{c}-{i}", "customer": "e2e-pool", "type": "e2e.pool",
                   "timestamp": now, "properties": {}} for i in range(300)]
        return stack.call("POST", "/v1/events", {"events": events}, timeout=120)[0]

    with ThreadPoolExecutor(24) as pool:
        assert set(pool.map(client, range(24))) == {200}
    assert "Connection pool is full" not in stack.log.read_text(errors="replace")


def test_a_500_is_logged_once_bounded_and_labelled_api(stack: Stack) -> None:
    # a 1,000-digit number in a meter filter cannot be stored (DynamoDB keeps 38 digits)
    huge = int("9" * 1000)
    status, _, doc = stack.call("PUT", "/v1/meters/e2e_huge_filter",
                                {"event_type": "x", "aggregation": "count", "filter": {"k": [huge]}})
    if status != 500:
        pytest.skip(f"no longer a 500 ({status}): nothing to log")
    deadline = time.monotonic() + 10
    while "unhandled error" not in stack.log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    errors = [json.loads(line) for line in stack.log.read_text(errors="replace").splitlines()
              if line.startswith("{") and "unhandled error" in line]
    assert len(errors) == 1, stack.log_tail()
    line = json.dumps(errors[0])
    assert len(line) < 6_000 and "stack_trace" not in errors[0], len(line)
    assert errors[0]["function_name"] == "api", errors[0]


def test_privacy_erase_then_the_cli_sweep_pseudonymises_raw_events(stack: Stack) -> None:
    customer = f"e2e-privacy-{os.getpid()}"
    start = last_month_start(datetime.now(timezone.utc))
    stack.ok("PUT", "/v1/meters/e2e_logins", {"event_type": "e2e.login", "aggregation": "unique_count",
                                              "property": "user"})
    stack.ok("PUT", "/v1/plans/e2e_seats", {"currency": "EUR", "interval": "month", "charges": [
        {"meter": "e2e_logins", "model": "per_unit", "unit_amount": "1.00"}]})
    stack.ok("PUT", f"/v1/customers/{customer}", {"name": "Privacy GmbH", "email": "dpo@privacy.example",
                                                   "plan": "e2e_seats", "started_at": iso(start),
                                                   "billing_anchor": iso(start)})
    events = [{"id": f"{customer}-{i}", "customer": customer, "type": "e2e.login", "timestamp": iso(start + timedelta(hours=i)),
               "properties": {"user": f"person-{i}@users.example"}} for i in range(3)]
    assert stack.ok("POST", "/v1/events", {"events": events})["accepted"] == 3
    deadline = time.monotonic() + 30
    while True:  # the erasure answers 409 until aggregation has caught up
        status, _, erased = stack.call("POST", f"/v1/customers/{customer}/erase", {"reason": "e2e"})
        if status != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, erased
    assert erased["profile_fields_removed"] == ["email"] and erased["usage_buckets_pseudonymised"] == 3
    out = stack.cwd / "privacy-out"
    res = subprocess.run([sys.executable, "-m", "meterbill.cli", "privacy", "sweep", "--export-events", customer,
                          "--out", str(out)], cwd=stack.cwd, env=stack.env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout)
    assert customer in summary["erasures"] and summary["exported"] == {customer: 3}
    exported = [json.loads(line) for line in Path(summary["files"][customer]).read_text().splitlines()]
    assert sorted(e["id"] for e in exported) == sorted(e["id"] for e in events)
    stored = stack.ok("GET", f"/v1/events/{customer}-0")
    assert stored["properties"]["user"].startswith("erased:")
    audit = stack.ok("GET", f"/v1/customers/{customer}/export")["audit"]
    assert {a["action"] for a in audit} == {"erase", "erase_raw_events", "export_raw_events", "export"}
    assert next(a for a in audit if a["action"] == "erase_raw_events")["by"]["via"] == "cli"
