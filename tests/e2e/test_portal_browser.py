"""The customer portal in a real browser: Debian's chromium driven by Playwright (no browser
download: ``executable_path``), against the real local stack (`meterbill run` in a subprocess).
It asserts what a person sees — the running bill, usage per meter, the invoice list — on a desktop
and a phone viewport, and the plain page a tampered or expired link gets.

Skipped, saying why, where chromium or Playwright is missing (`apt-get install -y chromium`).
``PORTAL_SCREENSHOTS=<dir>`` saves portal-desktop.png and portal-phone.png there (`make
screenshots` writes docs/images/). Months are derived from the clock, like the other e2e tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, iso, last_month_start, running_stack

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _playwright() -> Any:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium): the portal browser test "
                    "needs a real browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _playwright()
    with sync_playwright() as p:
        # root in a container: chromium's sandbox needs user namespaces it may not have
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("portal")) as (s, _):
        yield s


def _customer_with_usage_and_an_invoice(s: Stack) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    last = last_month_start(now)
    this = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    cid = f"portal-{os.getpid()}"
    s.ok("PUT", "/v1/meters/pt_tokens", {"event_type": "pt.call", "aggregation": "sum", "property": "tokens",
                                         "unit": "tokens"})
    s.ok("PUT", "/v1/plans/pt_plan", {"currency": "USD", "interval": "month", "base_fee": "20.00", "charges": [
        {"meter": "pt_tokens", "model": "per_unit", "unit_amount": "0.01"}]})
    s.ok("PUT", f"/v1/customers/{cid}", {"name": "Portal Test Ltd", "email": "ap@portal.example", "plan": "pt_plan",
                                         "started_at": iso(last), "billing_anchor": iso(last)})
    # last month: 1,000 tokens (invoiced: 20.00 + 10.00); this month so far: 2,345 tokens (20.00 + 23.45)
    mid = this + (now - this) / 2
    events = [{"id": f"{cid}-a{i}", "customer": cid, "type": "pt.call", "timestamp": iso(last.replace(day=3 + i)),
               "properties": {"tokens": 250}} for i in range(4)]
    events += [{"id": f"{cid}-b{i}", "customer": cid, "type": "pt.call", "timestamp": iso(mid),
                "properties": {"tokens": t}} for i, t in enumerate((2000, 345))]
    status, _, answer = s.call("POST", "/v1/events", {"events": events})
    assert status == 200, answer
    run = s.billing_run({"as_of": iso(this)})
    assert run["closed"] >= 1 and not run["failures"], run
    invoices = s.ok("GET", f"/v1/invoices?customer={cid}")["data"]
    assert [i["total"] for i in invoices] == ["30.00"], invoices
    import time

    deadline = time.monotonic() + 30   # the stream poller applies this month's events within moments
    while s.ok("GET", f"/v1/customers/{cid}/upcoming-invoice")["total"] != "43.45":
        assert time.monotonic() < deadline, s.log_tail()
        time.sleep(0.3)
    status, _, link = s.call("POST", f"/v1/customers/{cid}/portal-links", {"days": 2})
    assert status == 201, link
    return {"customer": cid, "invoice": invoices[0], "url": link["url"]}


def test_a_customer_sees_their_bill_usage_and_invoices_in_a_browser(stack: Stack, browser: Any) -> None:
    world = _customer_with_usage_and_an_invoice(stack)
    assert world["url"].startswith(stack.url + "/portal/")
    shots = os.environ.get("PORTAL_SCREENSHOTS")
    for name, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport, java_script_enabled=False)
        page = context.new_page()
        response = page.goto(world["url"])
        assert response is not None and response.status == 200
        assert page.locator("#bill-total").inner_text() == "43.45 USD"
        assert page.locator("#meter-pt_tokens .usage-total").inner_text() == "2,345"
        assert page.locator("#meter-pt_tokens svg").count() == 1
        rows = page.locator("#invoices tbody tr")
        assert rows.count() == 1
        row = rows.first.inner_text()
        assert world["invoice"]["number"] in row and "30.00 USD" in row
        assert "Portal Test Ltd" in page.locator("header").inner_text()
        # readable on a phone: nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"portal-{name}.png"), full_page=True)
        # the invoice's own page, through the portal
        with page.expect_navigation():
            page.locator("#invoices a", has_text="HTML").first.click()
        assert world["invoice"]["number"] in page.content()
        context.close()


def test_tampered_and_expired_links_show_the_error_page(stack: Stack, browser: Any) -> None:
    from meterbill.domain import portal_tokens

    status, _, link = stack.call("POST", "/v1/customers/nobody-here/portal-links", {})
    assert status == 404
    stack.ok("PUT", "/v1/plans/pt_plan2", {"currency": "USD", "interval": "month", "base_fee": "1.00"})
    stack.ok("PUT", "/v1/customers/pt-other", {"name": "Other Co", "plan": "pt_plan2"})
    status, _, link = stack.call("POST", "/v1/customers/pt-other/portal-links", {})
    assert status == 201
    page = browser.new_context(java_script_enabled=False).new_page()
    response = page.goto(link["url"][:-3] + ("xyz" if not link["url"].endswith("xyz") else "abc"))
    assert response is not None and response.status == 403
    assert page.locator("h2").inner_text() == "This link is not valid"
    assert "Other Co" not in page.content()
    # a genuine link whose time is up, signed with the stack's own key (its .meterbill/portal-secret)
    secret = (stack.cwd / ".meterbill" / "portal-secret").read_text().strip().encode()
    now_s = int(datetime.now(timezone.utc).timestamp())
    expired = portal_tokens.sign(secret, "pt-other", now_s - 60)
    response = page.goto(f"{stack.url}/portal/{expired}")
    assert response is not None and response.status == 410
    assert page.locator("h2").inner_text() == "This link has expired"
    assert "Other Co" not in page.content()


def test_the_cli_makes_a_link_the_running_stack_opens(stack: Stack) -> None:
    """`meterbill portal-link` in the stack's folder signs with the key the stack uses
    (.meterbill/portal-secret) and names the stack's URL."""
    import json
    import subprocess
    import sys
    import urllib.request

    stack.ok("PUT", "/v1/plans/pt_plan3", {"currency": "USD", "interval": "month", "base_fee": "3.00"})
    stack.ok("PUT", "/v1/customers/pt-cli", {"name": "Cli Customer GmbH", "plan": "pt_plan3"})
    out = subprocess.run([sys.executable, "-m", "meterbill.cli", "portal-link", "pt-cli", "--days", "3"],
                         cwd=stack.cwd, env=stack.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    link = json.loads(out.stdout)
    assert link["url"].startswith(stack.url + "/portal/") and link["customer_id"] == "pt-cli"
    with urllib.request.urlopen(link["url"], timeout=30) as resp:
        assert resp.status == 200 and "Cli Customer GmbH" in resp.read().decode()
    missing = subprocess.run([sys.executable, "-m", "meterbill.cli", "portal-link", "nobody"], cwd=stack.cwd,
                             env=stack.env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nobody" in missing.stderr
