"""`meterbill demo`: show the product working end to end in a minute, over the HTTP API only.

Sends usage for a customer that does not exist yet (pending), creates the customer, waits until
every event is aggregated, closes the last month that has ended (derived from the clock, so the
demo works on any day) with a billing run through the close queue, followed until it finishes, and prints the invoice next to the amount the
demo computed on its own from the events it sent.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from meterbill.local import stack

TIERS = [(Decimal(100_000), Decimal("0.00002")), (None, Decimal("0.00001"))]
BASE_FEE = Decimal("49.00")


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url.rstrip("/"), key

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.key}",
                                              "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        status, doc = self.call(method, path, body, headers)
        if status >= 300:
            raise SystemExit(f"{method} {path} -> {status}: {json.dumps(doc)}")
        return doc


def last_ended_month(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar month before ``now``'s (UTC)."""
    end = now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (end - timedelta(days=1)).replace(day=1), end


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_total(tokens: int) -> Decimal:
    first = min(tokens, 100_000)
    rest = max(tokens - 100_000, 0)
    return (BASE_FEE + first * TIERS[0][1] + rest * TIERS[1][1]).quantize(Decimal("0.01"))


def print_invoice(inv: dict[str, Any]) -> None:
    c = inv["customer"]
    print(f"\nINVOICE {inv['number']}   ({inv['id']}, {inv['status']})")
    print(f"  to:      {c['name']} <{c.get('email')}>")
    print(f"  period:  {inv['period']['start']} .. {inv['period']['end']}")
    print(f"  issued:  {inv['issued_at']}   due: {inv['due_at']} (net {inv['payment_terms_days']})")
    for line in inv["lines"]:
        qty = f"{line['quantity']} units" if line.get("quantity") is not None else ""
        print(f"  {line['description']:<30} {qty:>18} {line['amount']:>12} {inv['currency']}")
        for t in line.get("tiers", []):
            upper = t["up_to"] or "∞"
            print(f"      tier {t['tier']}: {t['units']} units ({t['from']}..{upper}] x {t['unit_amount']}"
                  f" = {t['amount']}")
    print(f"  {'subtotal':<49} {inv['subtotal']:>12} {inv['currency']}")
    print(f"  {'TOTAL':<49} {inv['total']:>12} {inv['currency']}")


def demo(url: str | None, key: str | None, n_events: int) -> int:
    state = stack.read_state()
    url = url or state.get("api_url") or f"http://127.0.0.1:{os.environ.get('METERBILL_PORT', '8000')}"
    key = key or os.environ.get("METERBILL_ADMIN_KEY") or state.get("admin_key")
    if not key:
        raise SystemExit("no admin key: pass --key or set METERBILL_ADMIN_KEY (as for `make run`)")
    api = Api(url, key)
    run = secrets.token_hex(3)
    customer = f"demo-{run}"
    print(f"meterbill demo against {url} (customer {customer})")
    api.ok("PUT", "/v1/meters/llm_tokens", {"event_type": "llm.completion", "aggregation": "sum",
                                              "property": "output_tokens", "name": "LLM output tokens",
                                              "unit": "token"})
    api.ok("PUT", "/v1/plans/demo_pro", {"currency": "USD", "interval": "month", "base_fee": str(BASE_FEE),
                                         "name": "Pro", "charges": [{
                                             "meter": "llm_tokens", "model": "graduated",
                                             "display_name": "LLM output tokens",
                                             "tiers": [{"up_to": "100000", "unit_amount": "0.00002"},
                                                       {"up_to": None, "unit_amount": "0.00001"}]}]})
    start, end = last_ended_month(datetime.now(timezone.utc))
    period_start, period_end = _iso(start), _iso(end)
    days = (end - start).days
    rng = random.Random(run)
    events = [{"id": f"{customer}-{i}", "customer": customer, "type": "llm.completion",
               "timestamp": _iso(start + timedelta(days=i % days, hours=9 + i % 8, minutes=i % 60, seconds=i % 47)),
               "properties": {"output_tokens": rng.randint(1, 200), "model": rng.choice(["small", "large"])}}
              for i in range(n_events)]
    tokens = sum(e["properties"]["output_tokens"] for e in events)
    t0 = time.monotonic()
    for i in range(0, len(events), 1000):
        res = api.ok("POST", "/v1/events", {"events": events[i:i + 1000]})
        if res["rejected"]:
            raise SystemExit(f"events rejected: {res['errors'][:3]}")
    resend = api.ok("POST", "/v1/events", {"events": events[:500]})  # a client retry: nothing counts twice
    print(f"sent {n_events} events ({tokens} tokens) in {time.monotonic() - t0:.1f} s; "
          f"customer unknown so far -> pending; re-sent 500 -> {resend['duplicates']} duplicates")
    api.ok("PUT", f"/v1/customers/{customer}", {
        "name": "Demo Corp", "email": "billing@demo.example", "plan": "demo_pro",
        "started_at": period_start, "billing_anchor": period_start, "payment_terms_days": 14,
        "address": {"line1": "1 Demo Street", "city": "Springfield", "country": "US"}})
    deadline = time.monotonic() + 120
    while True:
        usage = api.ok("GET", f"/v1/customers/{customer}/usage?from={period_start}&to={period_end}"
                              f"&meter=llm_tokens&window=day")
        seen = sum(Decimal(p["value"]) for m in usage["meters"] for p in m["points"])
        if seen == tokens:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"aggregation did not catch up: {seen} of {tokens} tokens")
        time.sleep(0.3)
    print(f"aggregated usage: {seen} tokens over {sum(len(m['points']) for m in usage['meters'])} days")
    from meterbill.local.billing_run import follow

    for _ in range(2):   # a second run is idempotent: no second invoice
        run = follow(api, api.ok("POST", "/v1/billing-runs", {"as_of": period_end}), show=sys.stderr.isatty())
        print(f"billing run {run['id']}: {run['queued']} queued, {run['closed']} closed, "
              f"{run['waiting']} waiting, {run['failed']} failed")
    # The local timer may close later periods too (the month may end while the demo runs): the
    # demo's month must have exactly one invoice.
    invoices = [i for i in api.ok("GET", f"/v1/invoices?customer={customer}")["data"]
                if i["period"]["start"] == period_start]
    if len(invoices) != 1:
        raise SystemExit(f"expected exactly one invoice for {period_start[:7]}, found {len(invoices)}")
    print_invoice(invoices[0])
    want = expected_total(tokens)
    ok = Decimal(invoices[0]["total"]) == want
    print(f"\nexpected total (computed by the demo from the events it sent): {want} USD -> "
          f"{'MATCH' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(demo(None, None, 3000))
