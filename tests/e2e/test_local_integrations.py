"""`METERBILL_INTEGRATIONS=stripe,hubspot,xero make run`, end to end on the real local stack: Prism
serves each vendor's own OpenAPI spec (../shared/specs) in front of a stateful stand-in, so every
request the SDKs send is checked against the vendor's contract. Closing a period pushes the
invoice to all three (`synced`, external ids); a `invoice.paid` webhook signed the way Stripe
signs it marks it paid, and the payment reaches Xero and HubSpot. Dates come from the clock."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.e2e.stack import Stack, accepts, iso, last_month_start, running_stack
from tests.integration.stripe_support import event, sign

pytestmark = pytest.mark.e2e
SPECS = Path(os.environ.get("METERBILL_SPECS_DIR") or Path(__file__).resolve().parents[3] / "shared" / "specs")
VENDORS = ("stripe", "hubspot", "xero")
WEBHOOK_SECRET = "whsec_e2e_local_integrations_0000"


def post_raw(s: Stack, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(s.url + path, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(s: Stack, invoice_id: str, done: Any, what: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        inv = s.ok("GET", f"/v1/invoices/{invoice_id}")
        failed = {n: i for n, i in (inv.get("integrations") or {}).items() if i.get("status") == "failed"}
        assert not failed, (failed, s.log_tail())
        if done(inv):
            return inv
        assert time.monotonic() < deadline, (what, inv.get("integrations"), s.log_tail(60))
        time.sleep(0.5)


def payment_synced(inv: dict[str, Any], name: str) -> bool:
    actions = (inv.get("integrations") or {}).get(name, {}).get("actions") or []
    # Stripe's collection is recorded as a payment (services/payments.py): its "payment" step carries it
    return any(a["action"] in ("paid", "payment") and a["status"] == "synced" for a in actions)


@pytest.mark.timeout(300)
def test_a_closed_invoice_reaches_every_vendor_and_its_stripe_payment_reaches_the_others(tmp_path: Path) -> None:
    if not SPECS.exists():
        pytest.fail(f"the vendor specs {SPECS} are missing: this test needs ../shared/specs (or METERBILL_SPECS_DIR)")
    extra = {"METERBILL_SPECS_DIR": str(SPECS)} if os.environ.get("METERBILL_SPECS_DIR") else {}
    with running_stack(tmp_path, start_timeout_s=240, METERBILL_INTEGRATIONS=",".join(VENDORS),
                       METERBILL_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, **extra) as (s, _):
        state = json.loads((tmp_path / ".meterbill" / "local.json").read_text())
        assert sorted(state["integrations"]) == sorted(VENDORS), s.log_tail()
        start = last_month_start(datetime.now(timezone.utc))
        cid = f"e2e-int-{os.getpid()}"
        s.ok("PUT", "/v1/plans/int_plan", {"currency": "USD", "interval": "month", "base_fee": "49.00", "charges": []})
        s.ok("PUT", f"/v1/customers/{cid}", {"name": "Integrations Ltd", "email": "billing@integrations.test",
                                             "plan": "int_plan", "started_at": iso(start), "billing_anchor": iso(start)})
        run = s.billing_run()
        assert run["closed"] == 1 and run["failed"] == 0, run
        [summary] = [i for i in s.ok("GET", "/v1/invoices?limit=100")["data"] if i["customer_id"] == cid]

        # 1. the close pushes it through every enabled integration: synced, with the vendor's ids
        inv = wait_for(s, summary["id"], lambda i: all((i.get("integrations") or {}).get(n, {}).get("status") ==
                                                       "synced" for n in VENDORS), "push synced everywhere")
        refs = {n: inv["integrations"][n]["external_id"] for n in VENDORS}
        assert all(refs.values()), inv["integrations"]
        assert refs["stripe"].startswith("in_"), refs          # the stand-in's ids, not Prism's one example
        assert inv["total"] == "49.00" and inv["status"] == "final", inv

        # 2. Stripe collects: its invoice.paid, signed as Stripe signs (the SDK verifies the header)
        client = stripe.StripeClient("sk_test_local", base_addresses={"api": state["integrations"]["stripe"]},
                                     max_network_retries=0)
        paid = client.v1.invoices.retrieve(refs["stripe"]).to_dict()
        assert paid["metadata"]["meterbill_invoice_id"] == inv["id"] and paid["total"] == 4900, paid
        paid.update(status="paid", amount_paid=paid["amount_due"], amount_remaining=0)
        body = event("invoice.paid", paid, event_id=f"evt_e2e_{os.getpid()}", created=int(time.time()))
        header = sign(body, WEBHOOK_SECRET)
        stripe.WebhookSignature.verify_header(body.decode(), header, WEBHOOK_SECRET, tolerance=300)

        status, answer = post_raw(s, "/v1/webhooks/stripe", body, {"Stripe-Signature": header[:-4] + "0000"})
        assert status == 400 and answer["error"]["field"] == "signature", answer   # tampered: nothing changes
        assert s.ok("GET", f"/v1/invoices/{inv['id']}")["status"] == "final"
        status, answer = post_raw(s, "/v1/webhooks/stripe", body, {"Stripe-Signature": header})
        assert status == 200 and answer["outcome"] == "paid", (answer, s.log_tail())
        assert post_raw(s, "/v1/webhooks/stripe", body, {"Stripe-Signature": header})[1]["duplicate"] is True

        # 3. the payment reaches Xero and HubSpot
        done = wait_for(s, inv["id"], lambda i: i["status"] == "paid" and payment_synced(i, "xero")
                        and payment_synced(i, "hubspot"), "payment synced to Xero and HubSpot")
        assert done["integrations"]["xero"]["external_id"] == refs["xero"]
        log = s.log.read_text(errors="replace")
        assert "request violates the spec" not in log, s.log_tail(80)   # every request valid per the vendors' specs

        # 4. Ctrl-C (SIGINT to the terminal's process group) stops Prism with the stack
        os.killpg(s.proc.pid, signal.SIGINT)
        assert s.proc.wait(timeout=30) == 0, s.log_tail()
        ports = [int(url.rsplit(":", 1)[1]) for url in state["integrations"].values()]
        deadline = time.monotonic() + 10
        while any(accepts(p) for p in ports):
            assert time.monotonic() < deadline, f"Prism still listening after Ctrl-C: {ports}"
            time.sleep(0.2)
        assert "meterbill stopped" in s.log_tail()
