"""An in-process fake of Xero's Accounting API (and its identity token endpoint) behind the SDK's
HTTP boundary (``meterbill/local/fakes/http.py``).

State follows Xero's: contacts (unique names); ACCREC invoices DRAFT → AUTHORISED → PAID, VOIDED,
DELETED, unique invoice numbers on PUT; line amounts = quantity × unit amount, unit amounts cut
to 2 decimals unless the request says ``unitdp=4``; ``TaxAmount`` taken as sent; payments reduce
``AmountDue``; credit notes and their allocations. Idempotency keys replay the first response.
Dates are answered as Xero does, ``/Date(<ms>+0000)/``.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from meterbill.domain.money import minor_units
from meterbill.local.fakes.http import Answer, FakeHTTP, Reply, Request

TOKEN_URL = "identity.xero.com"
API_PREFIX = "/api.xro/2.0"


def ms_date(iso_day: str) -> str:
    if str(iso_day).startswith("/Date("):            # the SDK sends dates the way Xero answers them
        return str(iso_day)
    day = date.fromisoformat(str(iso_day)[:10])
    epoch = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    return f"/Date({epoch}+0000)/"


def _where(where: str | None) -> dict[str, str]:
    return dict(re.findall(r'(\w+)=="((?:[^"\\]|\\.)*)"', where or ""))


class FakeXero(FakeHTTP):
    idempotent = True
    replays_failures = False   # what Xero keeps under a key after a 5xx is not documented (notes §4)

    def __init__(self) -> None:
        super().__init__()
        self.contacts: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.credit_notes: dict[str, dict[str, Any]] = {}
        self.tokens: list[dict[str, str]] = []
        self._ids = itertools.count(1)

    def error_body(self, status: int, message: str) -> Any:
        if status == 400:
            return {"ErrorNumber": 10, "Type": "ValidationException", "Message": message,
                    "Elements": [{"ValidationErrors": [{"Message": message}]}]}
        return {"Title": "Error", "Status": status, "Detail": message}

    def _id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._ids):012d}"

    def invoice_by_number(self, number: str) -> dict[str, Any]:
        return next(i for i in self.invoices.values() if i["InvoiceNumber"] == number)

    def route(self, req: Request) -> Reply:
        if TOKEN_URL in req.url:
            return self._token(req)
        if not req.headers.get("Authorization", "").startswith("Bearer ") or not req.headers.get("xero-tenant-id"):
            raise Answer(401, {"Title": "Unauthorized", "Status": 401})
        seg = req.path.removeprefix(API_PREFIX).strip("/").split("/")
        res, m = seg[0], req.method
        if res == "Contacts":
            if m == "GET":
                w = _where(req.query.get("where"))
                found = [c for c in self.contacts.values() if all(str(c.get(k)) == v for k, v in w.items())]
                return 200, {"Contacts": found}, {}
            if m == "PUT":
                return 200, {"Contacts": [self._new_contact(c) for c in req.body["Contacts"]]}, {}
            c = self.contacts[seg[1]]
            c.update({k: v for k, v in req.body["Contacts"][0].items() if k in ("Name", "ContactNumber", "EmailAddress")})
            return 200, {"Contacts": [c]}, {}
        if res == "Invoices":
            if m == "GET" and len(seg) == 1:
                numbers = set(filter(None, req.query.get("InvoiceNumbers", "").split(",")))
                found = [i for i in self.invoices.values() if not numbers or i["InvoiceNumber"] in numbers]
                return 200, {"Invoices": found}, {}
            if m == "PUT":
                return 200, {"Invoices": [self._new_invoice(i, req.query.get("unitdp") == "4")
                                          for i in req.body["Invoices"]]}, {}
            inv = self._get(self.invoices, seg[1])
            if m == "POST":
                self._move(inv, req.body["Invoices"][0]["Status"])
            return 200, {"Invoices": [inv]}, {}
        if res == "CreditNotes":
            if m == "GET":
                w = _where(req.query.get("where"))
                return 200, {"CreditNotes": [c for c in self.credit_notes.values()
                                             if all(str(c.get(k)) == v for k, v in w.items())]}, {}
            if len(seg) == 1:
                return 200, {"CreditNotes": [self._new_credit_note(c) for c in req.body["CreditNotes"]]}, {}
            return 200, {"Allocations": [self._allocate(self._get(self.credit_notes, seg[1]), a)
                                         for a in req.body["Allocations"]]}, {}
        if res == "Payments" and m in ("PUT", "POST"):         # create_payments (PUT), create_payment (POST)
            bodies = req.body["Payments"] if "Payments" in req.body else [req.body]
            return 200, {"Payments": [self._pay(b) for b in bodies]}, {}
        raise Answer(404, {"Title": "Not Found", "Status": 404})

    # -- behaviour -----------------------------------------------------------------------------------------

    def _token(self, req: Request) -> Reply:
        grant = req.body.get("grant_type")
        token = {"access_token": f"xat_{len(self.tokens) + 1}", "expires_in": 1800, "token_type": "Bearer",
                 "scope": req.body.get("scope") or "accounting.invoices"}
        if grant == "refresh_token":
            token["refresh_token"] = f"xrt_{len(self.tokens) + 1}"
        self.tokens.append({"grant_type": grant, **token})
        return 200, token, {}

    def _get(self, table: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
        if key not in table:
            raise Answer(404, {"Title": "Not Found", "Status": 404})
        return table[key]

    def _invalid(self, message: str) -> Answer:
        return Answer(400, self.error_body(400, message))

    def _new_contact(self, body: dict[str, Any]) -> dict[str, Any]:
        if any(c["Name"] == body["Name"] for c in self.contacts.values()):
            raise self._invalid(f"The contact name {body['Name']} is already assigned to another contact.")
        c = {"ContactID": self._id(), "Name": body["Name"], "ContactNumber": body.get("ContactNumber"),
             "EmailAddress": body.get("EmailAddress"), "ContactStatus": "ACTIVE"}
        c = {k: v for k, v in c.items() if v is not None}      # Xero leaves out empty fields
        self.contacts[c["ContactID"]] = c
        return c

    def _lines(self, body: dict[str, Any], unitdp4: bool, currency: str) -> tuple[list[dict[str, Any]], Decimal, Decimal]:
        quantum = Decimal(1).scaleb(-minor_units(currency))
        lines: list[dict[str, Any]] = []
        sub, tax = Decimal(0), Decimal(0)
        for ln in body.get("LineItems") or []:
            unit = Decimal(str(ln["UnitAmount"])).quantize(Decimal("0.0001") if unitdp4 else Decimal("0.01"),
                                                           ROUND_HALF_UP)
            amount = (Decimal(str(ln["Quantity"])) * unit).quantize(quantum, ROUND_HALF_UP)
            line_tax = Decimal(str(ln.get("TaxAmount", 0)))
            lines.append({**ln, "UnitAmount": unit, "LineAmount": amount, "TaxAmount": line_tax})
            sub, tax = sub + amount, tax + line_tax
        return lines, sub, tax

    def _new_invoice(self, body: dict[str, Any], unitdp4: bool) -> dict[str, Any]:
        if body.get("Type") != "ACCREC":
            raise self._invalid("Type must be ACCREC here")
        if any(i["InvoiceNumber"] == body["InvoiceNumber"] for i in self.invoices.values()):
            raise self._invalid("Invoice # must be unique.")
        self._get(self.contacts, body["Contact"]["ContactID"])
        lines, sub, tax = self._lines(body, unitdp4, body["CurrencyCode"])
        total = sub if body["LineAmountTypes"] == "Inclusive" else sub + tax
        inv = {"InvoiceID": self._id(), "Type": "ACCREC", "InvoiceNumber": body["InvoiceNumber"],
               "Reference": body.get("Reference"), "Contact": {"ContactID": body["Contact"]["ContactID"]},
               "Status": body.get("Status") or "DRAFT", "LineAmountTypes": body["LineAmountTypes"],
               "CurrencyCode": body["CurrencyCode"], "Date": ms_date(body["Date"]), "DueDate": ms_date(body["DueDate"]),
               "LineItems": lines, "SubTotal": sub, "TotalTax": tax, "Total": total,
               "AmountDue": total, "AmountPaid": Decimal(0), "AmountCredited": Decimal(0), "Payments": [], "CreditNotes": []}
        self.invoices[inv["InvoiceID"]] = inv
        return inv

    def _move(self, inv: dict[str, Any], status: str) -> None:
        allowed = {("DRAFT", "AUTHORISED"), ("DRAFT", "DELETED"), ("AUTHORISED", "VOIDED")}
        if inv["Status"] == status:
            return
        if (inv["Status"], status) not in allowed or (status == "VOIDED" and Decimal(inv["AmountPaid"])):
            raise self._invalid(f"Invoice cannot move from {inv['Status']} to {status}")
        inv["Status"] = status

    def _settle(self, inv: dict[str, Any], amount: Decimal, field: str) -> None:
        due = Decimal(inv["AmountDue"])
        if inv["Status"] != "AUTHORISED" or amount > due:
            raise self._invalid(f"{amount} exceeds the amount due {due} or the invoice is {inv['Status']}")
        inv["AmountDue"] = due - amount
        inv[field] = inv[field] + amount
        if due - amount == 0:
            inv["Status"] = "PAID"

    def _pay(self, body: dict[str, Any]) -> dict[str, Any]:
        inv = self._get(self.invoices, body["Invoice"]["InvoiceID"])
        if not body.get("Account", {}).get("Code"):
            raise self._invalid("Account code is required")
        amount = Decimal(str(body["Amount"]))
        self._settle(inv, amount, "AmountPaid")
        p = {"PaymentID": self._id(), "Date": ms_date(body["Date"]), "Amount": amount,
             "Reference": body.get("Reference"), "Account": {"Code": body["Account"]["Code"]},
             "Invoice": {"InvoiceID": inv["InvoiceID"]}, "Status": "AUTHORISED"}
        inv["Payments"].append({k: p[k] for k in ("PaymentID", "Date", "Amount", "Reference")})
        return p

    def _new_credit_note(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("Type") != "ACCRECCREDIT":
            raise self._invalid("Type must be ACCRECCREDIT here")
        lines, sub, tax = self._lines(body, True, body["CurrencyCode"])
        total = sub if body["LineAmountTypes"] == "Inclusive" else sub + tax
        cn = {"CreditNoteID": self._id(), "Type": "ACCRECCREDIT", "CreditNoteNumber": body["CreditNoteNumber"],
              "Reference": body.get("Reference"), "Contact": body["Contact"], "Status": body.get("Status", "DRAFT"),
              "LineAmountTypes": body["LineAmountTypes"], "CurrencyCode": body["CurrencyCode"],
              "Date": ms_date(body["Date"]), "LineItems": lines, "SubTotal": sub, "TotalTax": tax,
              "Total": total, "RemainingCredit": total, "Allocations": []}
        self.credit_notes[cn["CreditNoteID"]] = cn
        return cn

    def _allocate(self, cn: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        inv = self._get(self.invoices, body["Invoice"]["InvoiceID"])
        amount = Decimal(str(body["Amount"]))
        if amount > Decimal(cn["RemainingCredit"]):
            raise self._invalid("The amount allocated exceeds the remaining credit")
        self._settle(inv, amount, "AmountCredited")
        cn["RemainingCredit"] = cn["RemainingCredit"] - amount
        alloc = {"AllocationID": self._id(), "Amount": amount, "Date": ms_date(body["Date"]),
                 "Invoice": {"InvoiceID": inv["InvoiceID"]}}
        cn["Allocations"].append(alloc)
        return alloc
