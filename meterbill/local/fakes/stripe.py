"""An in-process fake of Stripe behind the SDK's HTTP client boundary.

``StripeClient(http_client=FakeStripe())`` sends every request here: the real SDK encodes the
parameters, parses the responses and raises its own errors, so the plugin is exercised as in
production. State follows Stripe's: customers; invoices draft → open (finalize) → paid / void /
uncollectible; invoice items on drafts only (at most 250); credit notes; invoice payments.
Idempotency follows docs.stripe.com/idempotency: the first response under a key — 500s included —
is saved and replayed (``Idempotent-Replayed: true``); other parameters under a used key are an
``idempotency_error``; ``forget_keys()`` is Stripe pruning keys after 24 h. Faults are queued with
``fail(...)``.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

MINIMUM_CHARGE = 50


def decode_form(text: str) -> dict[str, Any]:
    """``metadata[a]=1&lines[0][amount]=5`` → nested dicts / lists, as Stripe reads them."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(text or "", keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if node[idx] is None or last:
                    node[idx] = nxt
                node = node[idx]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return out


@dataclass
class Fault:
    method: str
    path: str          # regex matched against the path
    kind: str          # 500 | 500_after | timeout_before | timeout_after | 429 | 400
    retry_after: str | None = None


class FakeStripe(stripe.HTTPClient):
    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.customers: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.credit_notes: dict[str, dict[str, Any]] = {}
        self.invoice_payments: list[dict[str, Any]] = []
        self.keys: dict[str, tuple[str, tuple[str, int, dict[str, str]]]] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []
        self._ids = itertools.count(1)
        self._numbers = itertools.count(1)
        self.now = 1_793_600_000             # Stripe's clock (2026-11-02): ``created`` of new objects

    # -- test controls -------------------------------------------------------------------------------

    def fail(self, method: str, path: str, kind: str, times: int = 1, retry_after: str | None = None) -> None:
        self.faults += [Fault(method, path, kind, retry_after) for _ in range(times)]

    def forget_keys(self) -> None:
        self.keys.clear()

    def writes(self, path: str = "") -> list[tuple[str, str, dict[str, Any], str | None]]:
        return [r for r in self.requests if r[0] in ("POST", "DELETE") and r[1].startswith(path)]

    def pay(self, invoice_id: str, payment_intent: str = "pi_1") -> dict[str, Any]:
        inv = self.invoices[invoice_id]
        inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0)
        self.invoice_payments.append({"id": self._id("inpay"), "object": "invoice_payment", "invoice": invoice_id,
                                      "payment": {"type": "payment_intent", "payment_intent": payment_intent}})
        return inv

    # -- the HTTP boundary -----------------------------------------------------------------------------

    def request(self, method: str, url: str, headers: Any, post_data: Any = None, *,
                _usage: Any = None) -> tuple[str, int, dict[str, str]]:
        method = method.upper()
        parts = urlsplit(url)
        path = parts.path
        params = decode_form(post_data.decode() if isinstance(post_data, bytes) else (post_data or parts.query))
        key = (headers or {}).get("Idempotency-Key")
        self.requests.append((method, path, params, key))
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        if method == "POST" and key in self.keys:
            saved_print, saved = self.keys[key]
            if saved_print != fingerprint:
                return self._error(400, "Keys for idempotent requests can only be used with the same parameters "
                                        "they were first used with.", type_="idempotency_error")
            body, status, rheaders = saved
            return body, status, {**rheaders, "Idempotent-Replayed": "true"}
        fault = next((f for f in self.faults if f.method == method and re.fullmatch(f.path, path)), None)
        if fault is not None:
            self.faults.remove(fault)
        kind = fault.kind if fault else None
        if kind == "timeout_before":
            raise stripe.APIConnectionError("Request timed out (fake)", should_retry=True)
        if kind == "429":
            return self._error(429, "Too many requests", code="rate_limit", retry_after=fault.retry_after if fault else None)
        if kind == "400":
            return self._error(400, "Invalid request (fake)", code="parameter_invalid_empty")
        if kind == "500":
            response = self._error(500, "An unknown error occurred (fake)")
        else:
            try:
                response = self._route(method, path, params)
            except _Reply as reply:
                response = reply.response
            if kind == "500_after":
                response = self._error(500, "An unknown error occurred (fake, after processing)")
        if method == "POST" and key and response[1] not in (400, 409, 429):  # saved once execution started
            self.keys[key] = (fingerprint, response)
        if kind == "timeout_after":
            raise stripe.APIConnectionError("Request timed out (fake, after processing)", should_retry=True)
        return response

    def close(self) -> None:
        pass

    # -- helpers ----------------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):05d}"

    def _ok(self, obj: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
        return json.dumps(obj), 200, {"request-id": self._id("req")}

    def _error(self, status: int, message: str, *, code: str | None = None, type_: str = "invalid_request_error",
               retry_after: str | None = None) -> tuple[str, int, dict[str, str]]:
        headers = {"request-id": self._id("req")}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        err = {"message": message, "type": "api_error" if status >= 500 else type_}
        if code:
            err["code"] = code
        return json.dumps({"error": err}), status, headers

    def _page(self, objs: list[dict[str, Any]], params: dict[str, Any], url: str) -> tuple[str, int, dict[str, str]]:
        limit = int(params.get("limit") or 10)
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in objs]
            objs = objs[ids.index(after) + 1:] if after in ids else []
        return self._ok({"object": "list", "url": url, "data": objs[:limit], "has_more": len(objs) > limit})

    def _invoice_view(self, inv: dict[str, Any]) -> dict[str, Any]:
        if inv["status"] == "draft":
            total = sum(self.items[i]["amount"] for i in inv["items"])
            inv.update(subtotal=total, total=total, amount_due=total, amount_remaining=total)
        return {k: v for k, v in inv.items() if k != "items"}

    def _route(self, method: str, path: str, p: dict[str, Any]) -> tuple[str, int, dict[str, str]]:
        seg = path.strip("/").split("/")[1:]          # drop "v1"
        res = seg[0]
        if res == "customers":
            if method == "POST" and len(seg) == 1:
                c = {"id": self._id("cus"), "object": "customer", "name": p.get("name"), "email": p.get("email"),
                     "metadata": p.get("metadata") or {}, "balance": 0}
                self.customers[c["id"]] = c
                return self._ok(c)
            if method == "GET" and len(seg) == 1:
                found = [c for c in self.customers.values() if not p.get("email") or c["email"] == p["email"]]
                return self._page(found, p, "/v1/customers")
            c = self._get(self.customers, seg[1], "customer")
            if method == "POST":
                c.update({k: v for k, v in p.items() if k in ("name", "email")})
            return self._ok(c)
        if res == "invoices":
            if len(seg) == 1 and method == "POST":
                self._get(self.customers, p.get("customer", ""), "customer")
                inv = {"id": self._id("in"), "object": "invoice", "customer": p["customer"], "currency": p["currency"],
                       "status": "draft", "collection_method": p.get("collection_method"),
                       "days_until_due": int(p["days_until_due"]) if "days_until_due" in p else None,
                       "auto_advance": p.get("auto_advance") == "true", "metadata": p.get("metadata") or {},
                       "number": None, "hosted_invoice_url": None, "amount_paid": 0, "starting_balance": 0,
                       "created": self.now + len(self.invoices), "items": []}
                self.invoices[inv["id"]] = inv
                return self._ok(self._invoice_view(inv))
            if len(seg) == 1:
                found = [self._invoice_view(i) for i in self.invoices.values() if i["customer"] == p.get("customer")
                         and i["created"] >= int((p.get("created") or {}).get("gte", 0))]
                return self._page(sorted(found, key=lambda i: -i["created"]), p, "/v1/invoices")
            inv = self._get(self.invoices, seg[1], "invoice")
            action = seg[2] if len(seg) > 2 else None
            if method == "DELETE":
                self._require(inv["status"] == "draft", "only drafts can be deleted")
                del self.invoices[inv["id"]]
                return self._ok({"id": inv["id"], "object": "invoice", "deleted": True})
            if action == "finalize":
                self._require(inv["status"] == "draft", "This invoice is already finalized")
                self._invoice_view(inv)
                customer = self.customers[inv["customer"]]
                applied = max(customer["balance"], -inv["total"]) if customer["balance"] < 0 else 0
                customer["balance"] -= applied
                due = inv["total"] + applied
                inv.update(status="open", number=f"FAKE-{next(self._numbers):04d}", starting_balance=applied,
                           hosted_invoice_url=f"https://invoice.stripe.test/i/{inv['id']}", amount_due=due,
                           amount_remaining=due, auto_advance=p.get("auto_advance") == "true")
                if 0 < due < MINIMUM_CHARGE:          # below Stripe's minimum: paid, carried to the balance
                    customer["balance"] += due
                    inv.update(status="paid", amount_remaining=0)
                elif due == 0:
                    inv.update(status="paid")
                return self._ok(self._invoice_view(inv))
            if action == "void":
                self._require(inv["status"] in ("open", "uncollectible"), f"You cannot void a {inv['status']} invoice")
                inv["status"] = "void"
            elif action == "pay":
                self._require(inv["status"] in ("open", "uncollectible"), f"Invoice is {inv['status']}")
                inv.update(status="paid", amount_paid=inv["amount_remaining"], amount_remaining=0,
                           paid_out_of_band=p.get("paid_out_of_band") == "true")
            elif action == "send":                    # the invoice e-mail (a reminder once it is open)
                self._require(inv["status"] == "open" and inv["collection_method"] == "send_invoice",
                              "only open send_invoice invoices can be sent")
                inv["sent"] = inv.get("sent", 0) + 1
            return self._ok(self._invoice_view(inv))
        if res == "invoiceitems":
            if method == "POST":
                inv = self._get(self.invoices, p.get("invoice", ""), "invoice")
                self._require(inv["status"] == "draft", "You can only add invoice items to draft invoices")
                self._require(len(inv["items"]) < 250, "an invoice can have at most 250 invoice items")
                self._require(str(p.get("amount", "")).lstrip("-").isdigit(), "amount must be an integer")
                it = {"id": self._id("ii"), "object": "invoiceitem", "invoice": inv["id"], "amount": int(p["amount"]),
                      "currency": p["currency"], "description": p.get("description"),
                      "metadata": p.get("metadata") or {}, "period": p.get("period")}
                self.items[it["id"]] = it
                inv["items"].append(it["id"])
                return self._ok(it)
            found = [i for i in self.items.values() if i["invoice"] == p.get("invoice")]
            return self._page(found, p, "/v1/invoiceitems")
        if res == "credit_notes":
            if method == "POST":
                inv = self._get(self.invoices, p.get("invoice", ""), "invoice")
                amount = int(p["amount"])
                pre = min(amount, inv["amount_remaining"]) if inv["status"] == "open" else 0
                self._require(amount - pre == int(p.get("out_of_band_amount", 0)),
                              "The sum of credit amount, refund amount and out of band amount must equal the "
                              "credit note's post-payment amount")
                inv["amount_remaining"] -= pre
                cn = {"id": self._id("cn"), "object": "credit_note", "invoice": inv["id"], "amount": amount,
                      "number": f"CN-FAKE-{len(self.credit_notes) + 1}", "metadata": p.get("metadata") or {},
                      "pdf": None, "out_of_band_amount": int(p.get("out_of_band_amount", 0)), "reason": p.get("reason")}
                self.credit_notes[cn["id"]] = cn
                return self._ok(cn)
            found = [c for c in self.credit_notes.values() if c["invoice"] == p.get("invoice")]
            return self._page(found, p, "/v1/credit_notes")
        if res == "invoice_payments":
            intent = (p.get("payment") or {}).get("payment_intent")
            found = [x for x in self.invoice_payments if x["payment"]["payment_intent"] == intent]
            return self._page(found, p, "/v1/invoice_payments")
        raise _Reply(self._error(404, f"Unrecognized request URL ({method}: {path})"))

    def _get(self, table: dict[str, dict[str, Any]], obj_id: str, what: str) -> dict[str, Any]:
        if obj_id not in table:
            raise _Reply(self._error(404, f"No such {what}: '{obj_id}'", code="resource_missing"))
        return table[obj_id]

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise _Reply(self._error(400, message))


class _Reply(Exception):
    def __init__(self, response: tuple[str, int, dict[str, str]]) -> None:
        self.response = response
