"""End to end, issue 12: the real local stack (`meterbill run` in a subprocess) answers many
clients at once, and a stop signal in the middle of that load ends it within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import ADMIN_KEY, Stack, accepts, iso, pids_of_moto, running_stack

pytestmark = pytest.mark.e2e

STOP_WITHIN_S = 10          # "within seconds", measured from the signal to the runner's exit
ANSWER_TIMEOUT_S = 120      # a hang guard only: every request here answers in far less
CLIENTS = 32
INGESTS = 12                # of the 32 clients; the others read
BATCH = 1000
CUSTOMERS = 6


def stop(s: Stack, sig: signal.Signals) -> tuple[float, int | None]:
    """Send ``sig`` to the runner only (as `kill` does): seconds until it exited, and its exit code."""
    t0 = time.monotonic()
    os.kill(s.proc.pid, sig)
    try:
        code = s.proc.wait(timeout=STOP_WITHIN_S * 3)
    except subprocess.TimeoutExpired:
        code = None
    return time.monotonic() - t0, code


class Burst:
    """Requests sent at the same instant, one client (thread, connection) each."""

    def __init__(self, s: Stack, requests: list[tuple[str, str, Any, str | None]]) -> None:
        self.requests = requests
        self.results: list[Any] = [None] * len(requests)  # (status, doc) or the exception raised
        self.answered = threading.Semaphore(0)
        gate = threading.Barrier(len(requests))

        def client(i: int) -> None:
            method, path, body, key = requests[i]
            gate.wait()
            try:
                status, _, doc = s.call(method, path, body, key=key, timeout=ANSWER_TIMEOUT_S)
                self.results[i] = (status, doc)
            except Exception as exc:  # noqa: BLE001  # recorded; the test decides what is acceptable
                self.results[i] = exc
            self.answered.release()

        self.threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(requests))]
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> list[int]:
        """Waits up to ``timeout`` s in all; returns the indexes of the clients still waiting."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [i for i, t in enumerate(self.threads) if t.is_alive()]


def batch(n: int, customers: list[str], at: datetime) -> tuple[dict[str, Any], dict[str, int]]:
    """A 1,000-event ingest body (ids unique to batch ``n``) and the units it adds per customer."""
    events, units = [], dict.fromkeys(customers, 0)
    for i in range(BATCH):
        who = customers[i % len(customers)]
        events.append({"id": f"cc-{os.getpid()}-{n}-{i}", "customer": who, "type": "cc.work",
                       "timestamp": iso(at + timedelta(seconds=i)), "properties": {"units": 1 + i % 7}})
        units[who] += 1 + i % 7
    return {"events": events}, units


def usage_path(customer: str, frm: datetime, to: datetime) -> str:
    return f"/v1/customers/{customer}/usage?from={iso(frm)}&to={iso(to)}&meter=cc_units&window=day"


def test_32_concurrent_clients_all_get_answers(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    frm, at, to = now - timedelta(hours=2), now - timedelta(hours=1), now
    customers = [f"cc-{os.getpid()}-{c}" for c in range(CUSTOMERS)]
    with running_stack(tmp_path) as (s, moto_port):
        s.ok("PUT", "/v1/meters/cc_units", {"event_type": "cc.work", "aggregation": "sum", "property": "units"})
        s.ok("PUT", "/v1/plans/cc_plan", {"currency": "EUR", "interval": "month", "base_fee": "1.00",
                                          "charges": [{"meter": "cc_units", "model": "per_unit",
                                                       "unit_amount": "0.01"}]})
        for c in customers:
            s.ok("PUT", f"/v1/customers/{c}", {"name": c, "plan": "cc_plan", "started_at": iso(frm),
                                               "billing_anchor": iso(frm)})

        expected = dict.fromkeys(customers, 0)
        requests: list[tuple[str, str, Any, str | None]] = []
        for n in range(INGESTS):
            body, units = batch(n, customers, at)
            requests.append(("POST", "/v1/events", body, ADMIN_KEY))
            expected = {c: expected[c] + units[c] for c in customers}
        reads = [("GET", "/v1/openapi.json", None, None), ("GET", "/v1/health", None, None),
                 ("GET", f"/v1/invoices?customer={customers[0]}", None, ADMIN_KEY),
                 ("GET", usage_path(customers[1], frm, to), None, ADMIN_KEY), ("GET", "/v1/meters", None, ADMIN_KEY)]
        requests += [reads[i % len(reads)] for i in range(CLIENTS - INGESTS)]

        t0 = time.monotonic()
        burst = Burst(s, requests)
        waiting = burst.join(ANSWER_TIMEOUT_S)
        elapsed = time.monotonic() - t0
        assert not waiting, f"{len(waiting)} of {CLIENTS} clients got no answer in {ANSWER_TIMEOUT_S} s:\n{s.log_tail()}"
        for (method, path, _, _), result in zip(requests, burst.results):
            assert isinstance(result, tuple), (method, path[:60], result, s.log_tail())
            status, doc = result
            assert status == 200, (method, path[:60], status, doc)
            if path == "/v1/events":
                assert (doc["accepted"], doc["duplicates"], doc["errors"]) == (BATCH, 0, []), doc
            elif path == "/v1/openapi.json":
                assert "/v1/events" in doc["paths"]
        print(f"{CLIENTS} concurrent clients ({INGESTS} x {BATCH} events) answered in {elapsed:.1f} s")

        # Every stored event reaches aggregation (the poller was starved too when the API hung) ...
        deadline = time.monotonic() + 60
        totals: dict[str, int] = {}
        while time.monotonic() < deadline:
            totals = {}
            for c in customers:
                meters = s.ok("GET", usage_path(c, frm, to))["meters"]
                totals[c] = sum(int(p["value"]) for m in meters for p in m["points"])
            if totals == expected:
                break
            time.sleep(0.5)
        assert totals == expected, (totals, expected)
        # ... and the stack still serves what hung before: the API document and a billing run.
        assert s.call("GET", "/v1/openapi.json", key=None)[0] == 200
        run = s.billing_run({})
        assert (run["queued"], run["closed"]) == (0, 0), run  # the customers' first period is still open

        seconds, code = stop(s, signal.SIGTERM)
        assert code == 0, (code, s.log_tail())
        assert seconds < STOP_WITHIN_S, f"stopped after {seconds:.1f} s"
        assert not accepts(moto_port) and not pids_of_moto(moto_port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_mid_load_stops_within_seconds(tmp_path: Path, sig: signal.Signals) -> None:
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    with running_stack(tmp_path) as (s, moto_port):
        # No catalog needed: events of customers that do not exist yet are stored as pending.
        requests = [("POST", "/v1/events", batch(n, [f"nobody-{n}"], at)[0], ADMIN_KEY) for n in range(INGESTS)]
        burst = Burst(s, requests)
        assert burst.answered.acquire(timeout=ANSWER_TIMEOUT_S), s.log_tail()  # the stack is busy now
        answered = sum(r is not None for r in burst.results)
        assert answered < INGESTS, "the load ended before the signal; nothing was in flight"

        seconds, code = stop(s, sig)
        print(f"{sig.name} with {INGESTS - answered} of {INGESTS} requests in flight: stopped in {seconds:.1f} s")
        assert code is not None, f"`meterbill run` still running {STOP_WITHIN_S * 3} s after {sig.name}"
        assert seconds < STOP_WITHIN_S, f"stopped after {seconds:.1f} s:\n{s.log_tail()}"
        assert code == 0, (code, s.log_tail())
        assert "meterbill stopped" in s.log.read_text(errors="replace"), s.log_tail()
        assert not accepts(moto_port) and not pids_of_moto(moto_port), "moto outlived `meterbill run`"
        # Every client gets an end, none is left hanging: its events stored (200), or "stopping, retry"
        # (503: in flight past the grace period), or its connection closed.
        assert not burst.join(STOP_WITHIN_S), "a client still waits after the server stopped"
        for result in burst.results:
            assert isinstance(result, (tuple, OSError)), result
            if isinstance(result, tuple):
                status, doc = result
                if status == 200:
                    assert doc["accepted"] == BATCH, doc
                else:
                    assert (status, doc["error"]["code"]) == (503, "unavailable"), result
