"""The vendors of the enabled integrations, locally (`METERBILL_INTEGRATIONS=stripe,hubspot,xero make run`).

Each enabled vendor gets Prism (``@stoplight/prism-cli`` from ``node_modules``, the Makefile's
``npm ci`` stamp) serving the vendor's own OpenAPI spec from ``../shared/specs`` (or
``METERBILL_SPECS_DIR``) in **proxy** mode, in front of a stateful stand-in of the vendor
(``meterbill/local/fakes``) served on another free port:

    SDK --> Prism proxy (validates every request against the vendor's spec) --> stand-in (state)

Prism's own mock is stateless: every create answers with the spec's one example object (Stripe's
canned invoice totals 10.00 USD whatever we send), so the plugins' totals and ownership checks
would rightly fail every sync. Behind the proxy the flow ends ``synced`` with the stand-in's ids,
and every request is still checked against the vendor's contract: a request Prism finds invalid
is logged as a warning (``<vendor>: request violates the spec``) and counted in ``violations``.

The SDKs are pointed at Prism through the ordinary settings (``METERBILL_<VENDOR>_API_BASE``) with
fake credentials; a vendor whose ``API_BASE`` is already set (a real test-mode account) is left
alone, as is one whose spec is missing (said clearly, and that integration is not enabled).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger("meterbill.local")
ROOT = Path(__file__).resolve().parents[2]
PRISM_START_S = 180              # Xero's spec takes ~12 s alone on 2 cores; allow for a loaded machine
LOCAL_WEBHOOK_SECRET = "whsec_local_meterbill_0000000000"

# the settings each vendor's plugin gets locally: fake credentials (Prism accepts any token)
_XERO_ACCOUNTS = {"*": {"account_code": "200", "tax_type": "OUTPUT2"},
                  "@credit": {"account_code": "840", "tax_type": "NONE"}}


@dataclass(frozen=True)
class Vendor:
    name: str
    spec: str                                # under the specs folder
    settings: Mapping[str, str]              # METERBILL_<VENDOR>_<SETTING> defaults
    stand_in: Callable[[], Any]              # the stateful fake
    token_path: str | None = None            # an OAuth token endpoint served by the stand-in itself


def _stripe() -> Any:
    from meterbill.local.fakes.stripe import FakeStripe

    return FakeStripe()


def _hubspot() -> Any:
    from meterbill.local.fakes.hubspot import FakeHubSpot

    return FakeHubSpot()


def _xero() -> Any:
    from meterbill.local.fakes.xero import FakeXero

    return FakeXero()


VENDORS: dict[str, Vendor] = {
    "stripe": Vendor("stripe", "stripe/stripe-billing.prism.json",
                     {"api_key": "sk_test_local", "webhook_secret": LOCAL_WEBHOOK_SECRET, "max_network_retries": "0"},
                     _stripe),
    # the token the stand-in accepts (FakeHubSpot.token)
    "hubspot": Vendor("hubspot", "hubspot/hubspot-crm-merged.json", {"access_token": "pat-na1-test-token"}, _hubspot),
    "xero": Vendor("xero", "xero/xero_accounting.prism.yaml",
                   {"client_id": "LOCALCLIENT", "client_secret": "local_client_secret",
                    "tenant_id": "00000000-0000-4000-8000-00000000beef", "payment_account_code": "090",
                    "account_codes": json.dumps(_XERO_ACCOUNTS)},
                   _xero, token_path="/identity.xero.com/connect/token"),
}


def specs_dir() -> Path:
    return Path(os.environ.get("METERBILL_SPECS_DIR") or ROOT.parent / "shared" / "specs")


def prism_command() -> list[str] | None:
    local = ROOT / "node_modules" / ".bin" / "prism"
    if local.exists():
        return [str(local)]
    npx = shutil.which("npx")
    return [npx, "-y", "@stoplight/prism-cli@5.14.2"] if npx else None


class StandIn:
    """A fake vendor served over HTTP (threads; one lock, the fakes are not thread-safe)."""

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                # Prism (node) forwards header names in lower case; the fakes read them as the SDKs send
                # them (Authorization, Idempotency-Key, xero-tenant-id): both spellings
                headers = {name: v for k, v in self.headers.items() for name in (k.lower(), k.title())}
                url = f"http://{self.headers.get('Host', 'localhost')}{self.path}"
                with lock:
                    status, body, out = _call(fake, self.command, url, headers, raw)
                data = body if isinstance(body, bytes) else body.encode()
                self.send_response(status)
                for k, v in out.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                log.debug("stand-in: " + format, *args)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="vendor-stand-in", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _call(fake: Any, method: str, url: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
    """One request into a fake: the Stripe one takes the SDK's ``HTTPClient.request`` arguments,
    the others urllib3's ``PoolManager.request`` ones (JSON bodies, or form fields)."""
    from meterbill.local.fakes.stripe import FakeStripe

    if isinstance(fake, FakeStripe):
        body, status, out = fake.request(method, url, headers, raw.decode() if raw else None)
        return status, body, out
    form = "x-www-form-urlencoded" in headers.get("Content-Type", headers.get("content-type", ""))
    reply = fake.request(method, url, fields=dict(parse_qsl(raw.decode())) if form and raw else None,
                         headers=headers, body=None if form else (raw.decode() or None))
    return reply.status, reply.data, dict(reply.headers)


@dataclass
class LocalVendor:
    vendor: Vendor
    stand_in: StandIn
    prism: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def start_vendors(names: tuple[str, ...], env: MutableMapping[str, str] | None = None
                  ) -> tuple[list[LocalVendor], list[str]]:
    """Prism + stand-in for each vendor in ``names`` that has neither its own ``API_BASE`` set nor
    a missing spec; the settings pointing the SDK at it go into ``env`` (default ``os.environ``).
    Returns the vendors started and one message per vendor left out (the caller disables those)."""
    from meterbill.local.stack import _die_with_parent, free_port

    target: MutableMapping[str, str] = os.environ if env is None else env
    started: list[LocalVendor] = []
    skipped: list[str] = []
    command = prism_command()
    for name in names:
        vendor = VENDORS.get(name)
        prefix = f"METERBILL_{name.upper()}_"
        if vendor is None or target.get(prefix + "API_BASE"):
            continue                                # another plugin, or a real (test-mode) account
        spec = specs_dir() / vendor.spec
        if not spec.exists():
            skipped.append(f"{name}: its OpenAPI spec {spec} is missing (put ../shared/specs beside the repository "
                           f"or set METERBILL_SPECS_DIR); starting without {name}")
            continue
        if command is None:
            skipped.append(f"{name}: Prism is not installed (run `npm ci`, which `make run` does); starting without {name}")
            continue
        stand_in = StandIn(vendor.stand_in())
        port = free_port()
        prism = subprocess.Popen([*command, "proxy", "-h", "127.0.0.1", "-p", str(port), str(spec), stand_in.url],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                 # stopped by our cleanup, not by a terminal's Ctrl-C racing it; gone with us if killed
                                 start_new_session=True, preexec_fn=_die_with_parent)
        local = LocalVendor(vendor, stand_in, prism, f"http://127.0.0.1:{port}")
        started.append(local)
        for setting, value in vendor.settings.items():
            target.setdefault(prefix + setting.upper(), value)
        target[prefix + "API_BASE"] = local.url
        if vendor.token_path:
            target.setdefault(prefix + "IDENTITY_URL", stand_in.url + vendor.token_path)
    try:
        for local in started:
            _wait_listening(local)
    except Exception:
        stop_vendors(started)
        raise
    return started, skipped


def _wait_listening(local: LocalVendor) -> None:
    ready = threading.Event()

    def drain() -> None:          # keeps reading so Prism never blocks on a full pipe
        assert local.prism.stdout is not None
        for line in local.prism.stdout:
            line = line.rstrip()
            local.output.append(line)
            del local.output[:-200]
            if "Prism is listening" in line:
                ready.set()
            elif "Violation: request" in line:
                local.violations.append(line)
                log.warning("%s: request violates the spec: %s", local.vendor.name, line.split("Violation:", 1)[1])

    threading.Thread(target=drain, name=f"prism-{local.vendor.name}", daemon=True).start()
    deadline = time.monotonic() + PRISM_START_S
    while not ready.wait(0.2):
        if local.prism.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(local.output[-20:])
            raise RuntimeError(f"Prism did not start for {local.vendor.name} (exit {local.prism.poll()}):\n{tail}")
    log.info("%s: Prism (%s) at %s, validating in front of a local stand-in", local.vendor.name,
             local.vendor.spec, local.url)


def stop_vendors(started: list[LocalVendor]) -> None:
    for local in started:
        if local.prism.poll() is None:
            local.prism.terminate()
    for local in started:
        try:
            local.prism.wait(10)
        except subprocess.TimeoutExpired:
            local.prism.kill()
            local.prism.wait(5)
        local.stand_in.stop()
