"""HTTP latency through the real local stack (`meterbill run`: uvicorn + our app + moto's server).

Measures our stack + moto (the local DynamoDB stand-in), not API Gateway + Lambda + AWS.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench import FAKE_AWS, report
from bench import workload as w

ONE_EVENT_REQUESTS = 300
BATCH_REQUESTS = 15
BATCH = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), recorded so they can be reaped by id."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _pct(samples: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class _Client:
    def __init__(self, port: int, key: str) -> None:
        self._port = port
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        """(status, body, seconds) over one persistent keep-alive connection."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
                self._conn.connect()
            try:
                t0 = time.perf_counter()
                self._conn.request(method, path, body=body, headers=self._headers)
                resp = self._conn.getresponse()
                data = resp.read()
                return resp.status, data, time.perf_counter() - t0
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, doc: Any = None) -> Any:
        status, data, _ = self.call(method, path, None if doc is None else json.dumps(doc).encode())
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data or b"null")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _events(n: int, who: list[str]) -> bytes:
    now = datetime.now(timezone.utc)
    evts = w.events(n, n_customers=len(who), seed=secrets.randbits(32), start=now - timedelta(minutes=30),
                    span_s=29 * 60)
    for e in evts:
        e["id"] = str(uuid.uuid4())  # fresh ids: every request stores new events
    return w.body(evts).encode()


def _start(port: int, moto_port: int, key: str, workdir: str, log: Any) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("meterbill")
    cmd = [str(exe), "run"] if exe.exists() else [sys.executable, "-m", "meterbill.cli", "run"]
    env = {**os.environ, **FAKE_AWS, "METERBILL_PORT": str(port), "METERBILL_MOTO_PORT": str(moto_port),
           "METERBILL_CLOSE_EVERY": "0", "METERBILL_ADMIN_KEY": key, "LOG_LEVEL": "WARNING"}
    # cwd: a scratch directory, so the runner's .meterbill/local.json never overwrites a developer's.
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], ports: tuple[int, ...]) -> None:
    kids = _children(proc.pid)  # moto runs in its own session: remember it by pid
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: uvicorn shuts down, the runner stops moto
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    for pid in kids:
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)  # moto's own session/process group (pgid == its pid)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while any(_listening(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in ports if _listening(p)]
    if left:
        print(f"warning: something still listens on port(s) {left} after the HTTP bench", file=sys.stderr)


@contextmanager
def local_stack() -> Iterator[tuple[int, str, subprocess.Popen[bytes], Path]]:
    """`meterbill run` on free ports in a scratch directory, with a fresh admin key; yields (HTTP
    port, key, process, log path) and stops everything it started afterwards."""
    port, moto_port = _free_port(), _free_port()
    key = "mb_bench_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="meterbill-bench-") as workdir:
        log_path = Path(workdir) / "stack.log"
        with open(log_path, "wb") as log:
            proc = _start(port, moto_port, key, workdir, log)
            try:
                yield port, key, proc, log_path
            finally:
                _stop(proc, (port, moto_port))


def run() -> None:
    with local_stack() as (port, key, proc, log_path):
        client = _Client(port, key)
        try:
            _measure(proc, client, log_path)
        finally:
            client.close()


def wait_healthy(proc: subprocess.Popen[bytes], client: Any, log_path: Path) -> None:
    """Until the local stack answers GET /v1/health (90 s at most)."""
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"meterbill run exited: {log_path.read_text()[-2000:]}")
        try:
            if client.call("GET", "/v1/health")[0] == 200:
                return
        except OSError:
            client.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"local stack not healthy in 90 s: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)


def _measure(proc: subprocess.Popen[bytes], client: _Client, log_path: Path) -> None:
    wait_healthy(proc, client, log_path)
    who = w.customers()
    client.ok("PUT", "/v1/meters/llm_tokens", w.METERS["llm_tokens"])
    client.ok("PUT", "/v1/plans/bench_pro", {
        "currency": "USD", "interval": "month", "base_fee": "49.00", "charges": [
            {"meter": "llm_tokens", "model": "graduated",
             "tiers": [{"up_to": "100000", "unit_amount": "0.00002"}, {"up_to": None, "unit_amount": "0.00001"}]}]})
    for c in who:
        client.ok("PUT", f"/v1/customers/{c}", {"name": f"Bench {c}", "plan": "bench_pro"})

    def send(n: int) -> float:
        status, data, seconds = client.call("POST", "/v1/events", _events(n, who))
        if status != 200:
            raise RuntimeError(f"POST /v1/events ({n} events) -> {status}: {data[:300]!r}")
        return seconds

    for _ in range(20):
        send(1)
    for _ in range(2):
        send(BATCH)
    for n, count, name in ((1, ONE_EVENT_REQUESTS, "1_event"), (BATCH, BATCH_REQUESTS, "1000_events")):
        samples = [send(n) * 1000 for _ in range(count)]
        report(f"http_p50_ms_{name}", round(statistics.median(samples), 2), "ms",
               note=f"{count} sequential requests, local stack on moto")
        report(f"http_p99_ms_{name}", round(_pct(samples, 99), 2), "ms",
               note="nearest rank" + (f"; = max of {count}" if count < 100 else ""))
