"""The real local stack for end-to-end tests: `meterbill run` started in a subprocess as a
newcomer starts it, driven over HTTP only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "mbtest_e2e_admin_0123456789abcdef"
START_TIMEOUT_S = 60


@dataclass
class Stack:
    url: str
    cwd: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def call(self, method: str, path: str, body: Any = None, key: str | None = ADMIN_KEY,
             timeout: float = 30) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, status, msg = resp.read(), resp.status, resp.headers
        except urllib.error.HTTPError as exc:
            raw, status, msg = exc.read(), exc.code, exc.headers
        hdrs = {k.lower(): v for k, v in msg.items()}
        ctype = hdrs.get("content-type", "")
        return status, hdrs, json.loads(raw) if raw and "json" in ctype else raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, _, doc = self.call(method, path, body)
        assert status == 200, (method, path, status, doc, self.log_tail())
        return doc

    def billing_run(self, body: Any = None, timeout: float = 120) -> dict[str, Any]:
        """POST /v1/billing-runs (202 at once), then GET it until the close queue's workers have
        finished it."""
        status, _, run = self.call("POST", "/v1/billing-runs", {} if body is None else body)
        assert status == 202, (status, run, self.log_tail())
        return self.wait_finished(run["id"], timeout)

    def wait_finished(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.ok("GET", f"/v1/billing-runs/{run_id}")
            if run["status"] == "finished":
                return run
            assert time.monotonic() < deadline, (run, self.log_tail())
            time.sleep(0.3)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERBILL_")}
    # the subprocess runs this checkout's code, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pids_of_moto(port: int) -> list[int]:
    """Our runner's moto child, found by its command line (cleanup only if the runner was killed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if {b"moto.server", b"meterbill.local.moto_server"} & set(cmd) and str(port).encode() in cmd:
            found.append(int(entry.name))
    return found


def last_month_start(now: datetime) -> datetime:
    first_this = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first_this - timedelta(days=1)).replace(day=1)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")



@contextmanager
def running_stack(cwd: Path, start_timeout_s: float = START_TIMEOUT_S, **env_extra: str) -> Iterator[tuple[Stack, int]]:
    """`meterbill run` as a newcomer starts it (by default without the period timer), up and
    answering /v1/health; yields the stack and its moto port. Whatever the test did, nothing it
    started outlives it (SIGKILL as a last resort)."""
    port = free_port()
    env = child_env(METERBILL_PORT=str(port), METERBILL_CLOSE_EVERY="0", METERBILL_ADMIN_KEY=ADMIN_KEY)
    env.update(env_extra)
    log = cwd / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "meterbill.cli", "run"], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    s = Stack(f"http://127.0.0.1:{port}", cwd, env, proc, log)
    moto_port = None
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            assert proc.poll() is None, f"`meterbill run` exited with {proc.returncode}:\n{s.log_tail()}"
            assert time.monotonic() < deadline, f"no /v1/health within {start_timeout_s} s:\n{s.log_tail()}"
            try:
                if s.call("GET", "/v1/health", key=None, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        state = json.loads((cwd / ".meterbill" / "local.json").read_text())
        moto_port = int(state["dynamodb_endpoint"].rsplit(":", 1)[1])
        yield s, moto_port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if moto_port is not None:
            for pid in pids_of_moto(moto_port):
                os.kill(pid, signal.SIGKILL)
