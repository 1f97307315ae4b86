"""Prism, started once per session on a vendor's OpenAPI spec from ../shared/specs (see its README).

The spec folder and Prism (``node_modules/.bin/prism`` from ``npm ci``, else ``npx``) are
required: when either is missing the contract tests FAIL with a message saying what to install,
never skip — CI has both. ``METERBILL_SPECS_DIR`` overrides where the specs are.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(os.environ.get("METERBILL_SPECS_DIR") or ROOT.parent / "shared" / "specs")
PRISM_VERSION = "5.14.2"
START_TIMEOUT_S = 180            # 3 s alone on 2 cores; allow for a loaded machine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.contract)


@dataclass
class Prism:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def _prism_command() -> list[str]:
    local = ROOT / "node_modules" / ".bin" / "prism"
    if local.exists():
        return [str(local)]
    npx = shutil.which("npx")
    if npx:
        return [npx, "-y", f"@stoplight/prism-cli@{PRISM_VERSION}"]
    pytest.fail("Prism is not installed: run `npm ci` in the repository root (make test does it) or install "
                "Node.js so that npx is available", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_prism(spec: Path) -> Prism:
    if not spec.exists():
        pytest.fail(f"the vendor spec {spec} is missing: the contract tests need ../shared/specs beside the "
                    "repository (or METERBILL_SPECS_DIR)", pytrace=False)
    port = _free_port()
    process = subprocess.Popen([*_prism_command(), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               start_new_session=True)
    prism = Prism(f"http://127.0.0.1:{port}", process)
    ready = threading.Event()

    def drain() -> None:          # keeps reading so Prism never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            prism.output.append(line.rstrip())
            if "Prism is listening" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_prism(prism)
            tail = "\n".join(prism.output[-20:])
            pytest.fail(f"Prism did not start on {spec.name} (exit {process.returncode}):\n{tail}", pytrace=False)
    return prism


def stop_prism(prism: Prism) -> None:
    if prism.process.poll() is None:
        prism.process.terminate()
        try:
            prism.process.wait(10)
        except subprocess.TimeoutExpired:
            prism.process.kill()
            prism.process.wait(10)


@pytest.fixture(scope="session")
def stripe_prism() -> Iterator[Prism]:
    prism = start_prism(SPECS / "stripe" / "stripe-billing.prism.json")
    yield prism
    stop_prism(prism)


@pytest.fixture(scope="session")
def hubspot_prism() -> Iterator[Prism]:
    prism = start_prism(SPECS / "hubspot" / "hubspot-crm-merged.json")
    yield prism
    stop_prism(prism)


@pytest.fixture(scope="session")
def xero_prism() -> Iterator[Prism]:
    """Xero's Prism starts in ~12 s and grows to ~650 MB after a few invoice calls: once per session."""
    prism = start_prism(SPECS / "xero" / "xero_accounting.prism.yaml")
    yield prism
    stop_prism(prism)


class RecordingPool(urllib3.PoolManager):
    """A real urllib3 pool for the OpenAPI-generated SDKs (HubSpot, Xero), keeping each response's
    method, URL, status and ``sl-violations`` header."""

    def __init__(self) -> None:
        super().__init__(retries=False)
        self.seen: list[tuple[str, str, int, str | None]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        self.seen.append((method.upper(), url, response.status, response.headers.get("sl-violations")))
        return response

    def refused(self) -> list[tuple[str, str, int, list[dict[str, object]]]]:
        return [(m, u, s, request_violations(v)) for m, u, s, v in self.seen if s >= 400 or request_violations(v)]


def request_violations(header: str | None) -> list[dict[str, object]]:
    """The ``sl-violations`` entries about the request (entries about Prism's own canned response
    are Prism's business)."""
    if not header:
        return []
    return [v for v in json.loads(header) if (v.get("location") or ["request"])[0] == "request"]
