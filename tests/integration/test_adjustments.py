"""After pricing, through the HTTP API on moto: discounts, prepaid credits, credit notes, and late
usage after an invoice is final (adjustment line on the next invoice, or a credit note).

Plan 'pro' (tests/integration/test_api.py): 49.00 base fee; tokens graduated 0.01 up to 1,000
then 0.005; calls 0.001 each. Customer 'acme' monthly from 2026-10-01; the clock says 2026-11-05."""

# ruff: noqa: F811  (the API fixtures are imported from test_api and used as parameters)
from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ev
from tests.integration.test_api import Api, api, catalog, error, events_body  # noqa: F401  (fixtures)

NOV, DEC, JAN = "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"


def send(api: Api, drain: Any, *events: dict[str, Any]) -> None:
    resp = api.post("/v1/events", events_body(*events), key="ingest")
    assert resp.status_code == 200, resp.text
    drain()


def close(api: Api, as_of: str) -> dict[str, Any]:
    return api.billing_run({"as_of": as_of})


def invoice_for(api: Api, start: str, customer: str = "acme") -> dict[str, Any]:
    found = [i for i in api.ok("GET", "/v1/invoices", params={"customer": customer})["data"]
             if i["period"]["start"] == start]
    assert len(found) == 1, found
    return found[0]


def to_january(clock: Any) -> None:
    clock.advance(days=60)  # 2027-01-04: November and December can close


# -- discounts ---------------------------------------------------------------------------
def test_percentage_and_fixed_discounts_apply_before_tax_in_order(catalog: Api, drain: Any) -> None:
    catalog.ok("PUT", "/v1/tax-rates/us", {"name": "Sales tax 10%", "percentage": "10", "country": "US"})
    catalog.ok("PUT", "/v1/customers/acme/discounts/loyal", {"type": "percentage", "percentage": "10",
                                                              "duration": "forever", "name": "Loyalty"})
    catalog.ok("PUT", "/v1/customers/acme/discounts/welcome", {"type": "fixed", "amount": "5.00", "meter": "tokens"})
    send(catalog, drain, *[ev(i, tokens=300) for i in range(5)])
    close(catalog, NOV)
    inv = invoice_for(catalog, "2026-10-01T00:00:00Z")
    # lines 49.00 + 12.50 + 0.01 = 61.51; 10 % of 61.51 = 6.151 -> 6.15; 5.00 off tokens (12.50 left)
    assert inv["subtotal"] == "61.51"
    assert [(d["discount"], d["amount"]) for d in inv["discounts"]] == [("loyal", "6.15"), ("welcome", "5.00")]
    assert inv["discount_total"] == "11.15"
    # tax on 61.51 - 11.15 = 50.36 -> 5.036 -> 5.04; total 55.40
    assert (inv["taxes"][0]["taxable_amount"], inv["tax_total"], inv["total"]) == ("50.36", "5.04", "55.40")
    assert inv["amount_due"] == "55.40"
    listed = {d["id"]: d for d in catalog.ok("GET", "/v1/customers/acme/discounts")["data"]}
    assert (listed["welcome"]["applied"], listed["welcome"]["remaining"], listed["welcome"]["active"]) == (1, "0.00", False)
    assert (listed["loyal"]["applied"], listed["loyal"]["active"]) == (1, True)


def test_fixed_once_discount_carries_its_unused_part_and_repeating_stops(catalog: Api, drain: Any,
                                                                         clock: Any) -> None:
    catalog.ok("PUT", "/v1/customers/acme/discounts/big", {"type": "fixed", "amount": "80.00"})
    catalog.ok("PUT", "/v1/customers/acme/discounts/two", {"type": "percentage", "percentage": "50",
                                                            "duration": "repeating", "periods": 2, "meter": "tokens"})
    to_january(clock)
    send(catalog, drain, ev(1, tokens=1000), ev(2, ts="2026-11-10T00:00:00Z", tokens=1000),
         ev(3, ts="2026-12-10T00:00:00Z", tokens=1000))
    close(catalog, JAN)
    amounts = [invoice_for(catalog, s) for s in ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")]
    # each month: 49.00 + 10.00 tokens + 0.00 calls (0.001) = 59.00
    # Oct: 80.00 fixed takes all 59.00 (21.00 left), then 50 % of tokens: nothing left to take
    # Nov: the 21.00 left, then 50 % of 10.00 tokens = 5.00; Dec: the percentage has run out (2 invoices)
    assert [i["subtotal"] for i in amounts] == ["59.00", "59.00", "59.00"]
    assert [[(d["discount"], d["amount"]) for d in i["discounts"]] for i in amounts] == [
        [("big", "59.00"), ("two", "0.00")], [("big", "21.00"), ("two", "5.00")], []]
    assert [i["total"] for i in amounts] == ["0.00", "33.00", "59.00"]


def test_ended_discount_stops_and_bad_discounts_name_the_field(catalog: Api, drain: Any) -> None:
    catalog.ok("PUT", "/v1/customers/acme/discounts/gone", {"type": "percentage", "percentage": "10",
                                                             "duration": "forever"})
    assert catalog.ok("DELETE", "/v1/customers/acme/discounts/gone")["active"] is False
    send(catalog, drain, ev(1, tokens=100))
    close(catalog, NOV)
    assert invoice_for(catalog, "2026-10-01T00:00:00Z")["discounts"] == []
    assert error(catalog.put("/v1/customers/acme/discounts/x", {"type": "percentage", "percentage": "120"}),
                 400)["field"] == "percentage"
    assert error(catalog.put("/v1/customers/acme/discounts/x", {"type": "percentage", "percentage": "5",
                                                                 "duration": "repeating"}), 400)["field"] == "periods"
    assert error(catalog.put("/v1/customers/acme/discounts/x", {"type": "fixed", "amount": "5", "meter": "gpu"}),
                 400)["field"] == "meter"
    catalog.ok("PUT", "/v1/customers/acme/discounts/same", {"type": "fixed", "amount": "5.00"})
    catalog.ok("PUT", "/v1/customers/acme/discounts/same", {"type": "fixed", "amount": "5.00"})  # retry: fine
    assert error(catalog.put("/v1/customers/acme/discounts/same", {"type": "fixed", "amount": "6.00"}),
                 409)["field"] == "id"


# -- prepaid credits ---------------------------------------------------------------------
def test_credits_are_drawn_soonest_expiry_first_after_tax(catalog: Api, drain: Any, clock: Any) -> None:
    catalog.ok("PUT", "/v1/customers/acme/credit-grants/promo", {"amount": "30.00", "expires_at": "2026-11-20T00:00:00Z",
                                                                  "reason": "launch promo"})
    catalog.ok("PUT", "/v1/customers/acme/credit-grants/prepaid", {"amount": "100.00"})
    assert catalog.ok("GET", "/v1/customers/acme/credits")["balance"] == "130.00"
    send(catalog, drain, *[ev(i, tokens=300) for i in range(5)])
    close(catalog, NOV)
    inv = invoice_for(catalog, "2026-10-01T00:00:00Z")
    # total 61.51: 30.00 from the expiring grant, 31.51 from the other; nothing left to pay
    assert [(c["grant"], c["amount"]) for c in inv["credits"]] == [("promo", "30.00"), ("prepaid", "31.51")]
    assert (inv["total"], inv["credits_applied"], inv["amount_due"]) == ("61.51", "61.51", "0.00")
    credits = catalog.ok("GET", "/v1/customers/acme/credits")
    assert credits["balance"] == "68.49"
    assert {g["id"]: (g["remaining"], g["status"]) for g in credits["grants"]} == {
        "promo": ("0.00", "used"), "prepaid": ("68.49", "available")}
    close(catalog, NOV)  # a rerun draws nothing twice
    assert catalog.ok("GET", "/v1/customers/acme/credits")["balance"] == "68.49"


def test_expired_credit_is_not_drawn(catalog: Api, drain: Any, clock: Any) -> None:
    catalog.ok("PUT", "/v1/customers/acme/credit-grants/short", {"amount": "10.00", "expires_at": "2026-11-20T00:00:00Z"})
    send(catalog, drain, ev(1, tokens=0))
    clock.advance(days=30)  # 2026-12-05
    close(catalog, NOV)
    close(catalog, DEC)
    oct_, nov = invoice_for(catalog, "2026-10-01T00:00:00Z"), invoice_for(catalog, "2026-11-01T00:00:00Z")
    assert (oct_["credits_applied"], oct_["amount_due"]) == ("10.00", "39.00")  # issued Nov 1: usable
    assert (nov["credits_applied"], nov["amount_due"]) == ("0.00", "49.00")      # issued Dec 1: none left
    assert error(catalog.put("/v1/customers/acme/credit-grants/old", {"amount": "5", "expires_at": "2026-01-01T00:00:00Z"}),
                 400)["field"] == "expires_at"
    assert error(catalog.put("/v1/customers/acme/credit-grants/odd", {"amount": "5.001"}), 400)["field"] == "amount"


# -- credit notes ------------------------------------------------------------------------
def test_credit_notes_reduce_what_is_owed_then_become_credit_balance(catalog: Api, drain: Any) -> None:
    catalog.ok("PUT", "/v1/tax-rates/us", {"name": "Sales tax 10%", "percentage": "10", "country": "US"})
    send(catalog, drain, *[ev(i, tokens=300) for i in range(5)])
    close(catalog, NOV)
    inv = invoice_for(catalog, "2026-10-01T00:00:00Z")
    assert (inv["subtotal"], inv["tax_total"], inv["total"]) == ("61.51", "6.15", "67.66")
    resp = catalog.post("/v1/credit-notes", {"invoice": inv["id"], "amount": "10.00", "reason": "product_unsatisfactory",
                                             "idempotency_key": "ticket-7"})
    assert resp.status_code == 201, resp.text
    note = resp.json()
    # 10.00 + 10 % tax 1.00 = 11.00, all against the unpaid invoice
    assert (note["number"], note["subtotal"], note["tax_total"], note["total"]) == ("CN-000001", "10.00", "1.00", "11.00")
    assert (note["credited_to_invoice"], note["credited_to_balance"]) == ("11.00", "0.00")
    again = catalog.post("/v1/credit-notes", {"invoice": inv["id"], "amount": "10.00", "idempotency_key": "ticket-7"})
    assert again.json()["id"] == note["id"] and again.json()["number"] == "CN-000001"
    after = catalog.ok("GET", f"/v1/invoices/{inv['id']}")
    assert (after["credited_total"], after["amount_due"], after["status"]) == ("11.00", "56.66", "final")
    catalog.ok("POST", f"/v1/invoices/{inv['id']}/mark-paid", {"reference": "wire 1"})
    # paid: a line credit of the tokens line (12.50 + 1.25 tax) goes to the credit balance
    second = catalog.post("/v1/credit-notes", {"invoice": inv["id"], "lines": [{"line": 1, "amount": "12.50"}],
                                               "reason": "duplicate"}).json()
    assert (second["number"], second["total"], second["credited_to_balance"]) == ("CN-000002", "13.75", "13.75")
    assert catalog.ok("GET", "/v1/customers/acme/credits")["balance"] == "13.75"
    paid = catalog.ok("GET", f"/v1/invoices/{inv['id']}")
    assert (paid["credited_total"], paid["credited_to_invoice_total"], paid["amount_due"]) == ("24.75", "11.00", "56.66")
    listed = catalog.ok("GET", "/v1/credit-notes", params={"invoice": inv["id"]})["data"]
    assert [n["number"] for n in listed] == ["CN-000001", "CN-000002"]
    # 67.66 - 11.00 - 13.75 = 42.91 left to credit; 40.00 + 4.00 tax is too much
    too_much = error(catalog.post("/v1/credit-notes", {"invoice": inv["id"], "amount": "40.00"}), 400)
    assert too_much["field"] == "amount" and "42.91" in too_much["message"]
    assert error(catalog.post("/v1/credit-notes", {"invoice": inv["id"], "lines": [{"line": 9, "amount": "1"}]}),
                 400)["field"] == "lines[0].line"


def test_credit_note_needs_a_final_invoice(catalog: Api, drain: Any) -> None:
    acme = catalog.ok("GET", "/v1/customers/acme")
    catalog.ok("PUT", "/v1/customers/acme", {k: acme[k] for k in ("name", "plan", "started_at", "billing_anchor")}
               | {"invoice_grace_hours": 72})
    send(catalog, drain, ev(1, tokens=500))
    close(catalog, NOV)
    draft = invoice_for(catalog, "2026-10-01T00:00:00Z")
    assert draft["status"] == "draft"
    assert error(catalog.post("/v1/credit-notes", {"invoice": draft["id"], "amount": "1.00"}), 409)["field"] == "invoice"
    assert error(catalog.post("/v1/credit-notes", {"invoice": "in_nope", "amount": "1.00"}), 404)["field"] == "invoice"


# -- late usage after finalization ---------------------------------------------------------
def test_late_usage_is_billed_on_the_next_invoice_naming_the_original(catalog: Api, drain: Any, clock: Any) -> None:
    send(catalog, drain, ev(1, tokens=500))
    close(catalog, NOV)
    october = invoice_for(catalog, "2026-10-01T00:00:00Z")
    assert october["subtotal"] == "54.00"  # 49.00 + 500 x 0.01 + 0.001 -> 0.00
    send(catalog, drain, ev("late-1", ts="2026-10-31T23:59:00Z", tokens=700))
    clock.advance(days=30)
    close(catalog, DEC)
    november = invoice_for(catalog, "2026-11-01T00:00:00Z")
    # October re-rated: 1,200 tokens = 10.00 + 200 x 0.005 = 11.00; 2 calls 0.002 -> 0.00; 60.00 - 54.00
    adjustment = [ln for ln in november["lines"] if ln["type"] == "adjustment"]
    assert len(adjustment) == 1
    assert adjustment[0]["amount"] == "6.00"
    assert adjustment[0]["refers_to"] == {"invoice": october["id"], "number": october["number"]}
    assert adjustment[0]["period"] == {"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
    assert [(p["label"], p["units"], p["amount"]) for p in adjustment[0]["parts"]] == [
        ("tokens", "700", "6.00"), ("calls", "1", "0.00")]
    assert november["subtotal"] == "55.00"  # 49.00 base + 6.00
    assert catalog.ok("GET", f"/v1/invoices/{october['id']}")["lines"] == october["lines"]  # final stays final
    # a second late event later: only the new difference, once
    send(catalog, drain, ev("late-2", ts="2026-10-15T00:00:00Z", tokens=200))
    close(catalog, DEC)
    clock.advance(days=31)
    close(catalog, JAN)
    december = invoice_for(catalog, "2026-12-01T00:00:00Z")
    # 1,400 tokens = 10.00 + 400 x 0.005 = 12.00; 3 calls 0.003 -> 0.00; 61.00 - 60.00 = 1.00
    late = [ln for ln in december["lines"] if ln["type"] == "adjustment"]
    assert [ln["amount"] for ln in late] == ["1.00"]
    assert [(p["label"], p["units"], p["amount"]) for p in late[0]["parts"]] == [("tokens", "200", "1.00"),
                                                                                ("calls", "1", "0.00")]
    close(catalog, JAN)
    assert [i["number"] for i in catalog.ok("GET", "/v1/invoices", params={"customer": "acme"})["data"]] == [
        "T-000001", "T-000002", "T-000003"]


def test_late_usage_that_lowers_a_final_invoice_gets_a_credit_note(catalog: Api, drain: Any, clock: Any) -> None:
    send(catalog, drain, *[ev(i, tokens=300) for i in range(5)])
    close(catalog, NOV)
    october = invoice_for(catalog, "2026-10-01T00:00:00Z")
    assert october["subtotal"] == "61.51"  # 49.00 + 12.50 + 0.005 -> 0.01
    send(catalog, drain, ev("refund", ts="2026-10-20T00:00:00Z", tokens=-500))
    clock.advance(days=30)
    close(catalog, DEC)
    # October re-rated: 1,000 tokens = 10.00; 6 calls 0.006 -> 0.01; 59.01 - 61.51 = -2.50
    notes = catalog.ok("GET", "/v1/credit-notes", params={"invoice": october["id"]})["data"]
    assert [(n["number"], n["total"], n["reason"]) for n in notes] == [("CN-000001", "2.50", "late_usage_adjustment")]
    assert catalog.ok("GET", f"/v1/invoices/{october['id']}")["amount_due"] == "59.01"
    november = invoice_for(catalog, "2026-11-01T00:00:00Z")
    assert [ln for ln in november["lines"] if ln["type"] == "adjustment"] == []
    close(catalog, DEC)
    assert len(catalog.ok("GET", "/v1/credit-notes")["data"]) == 1  # settled once


@pytest.mark.parametrize("grace_hours", [48])
def test_late_usage_during_grace_lands_on_the_draft_not_an_adjustment(catalog: Api, drain: Any, clock: Any,
                                                                      grace_hours: int) -> None:
    acme = catalog.ok("GET", "/v1/customers/acme")
    catalog.ok("PUT", "/v1/customers/acme", {k: acme[k] for k in ("name", "email", "plan", "started_at",
                                                                    "billing_anchor", "payment_terms_days")}
               | {"invoice_grace_hours": grace_hours})
    send(catalog, drain, ev(1, tokens=500))
    close(catalog, "2026-11-02T00:00:00Z")
    assert invoice_for(catalog, "2026-10-01T00:00:00Z")["status"] == "draft"
    send(catalog, drain, ev(2, ts="2026-10-31T23:00:00Z", tokens=700))
    close(catalog, "2026-11-04T00:00:00Z")
    october = invoice_for(catalog, "2026-10-01T00:00:00Z")
    assert (october["status"], october["subtotal"]) == ("final", "60.00")
    clock.advance(days=30)
    close(catalog, DEC)
    assert [ln for ln in invoice_for(catalog, "2026-11-01T00:00:00Z")["lines"] if ln["type"] == "adjustment"] == []


# -- progressive (threshold) billing -------------------------------------------------------
def test_threshold_invoices_early_and_the_period_invoice_nets_them(catalog: Api, drain: Any, clock: Any) -> None:
    close(catalog, NOV)  # acme's October: T-000001
    catalog.ok("PUT", "/v1/customers/big", {"name": "Big", "plan": "pro", "started_at": NOV, "billing_anchor": NOV,
                                            "progressive_threshold": "20.00"})
    send(catalog, drain, ev(1, customer="big", ts="2026-11-02T00:00:00Z", tokens=3000))
    run = catalog.billing_run({})
    # 3,000 tokens = 1,000 x 0.01 + 2,000 x 0.005 = 20.00 (calls 0.001 -> 0.00): the threshold is reached
    assert len(run["invoices_created"]) == 1
    first = catalog.ok("GET", f"/v1/invoices/{run['invoices_created'][0]}")
    assert (first["kind"], first["number"], first["subtotal"], first["total"]) == ("threshold", "T-000002", "20.00", "20.00")
    assert first["period"] == {"start": NOV, "end": "2026-11-05T12:00:00Z"}
    assert [ln["type"] for ln in first["lines"]] == ["usage", "usage"]
    assert catalog.billing_run({})["invoices_created"] == []   # nothing new to bill
    send(catalog, drain, ev(2, customer="big", ts="2026-11-03T00:00:00Z", tokens=1000))
    # 4,000 tokens = 25.00: only 5.00 more than invoiced, below the threshold
    assert catalog.billing_run({})["invoices_created"] == []
    send(catalog, drain, ev(3, customer="big", ts="2026-11-04T00:00:00Z", tokens=4000))
    second = catalog.ok("GET", "/v1/invoices/" + catalog.billing_run({})["invoices_created"][0])
    # 8,000 tokens = 10.00 + 7,000 x 0.005 = 45.00; 45.00 - 20.00 invoiced = 25.00
    assert [(ln["type"], ln["amount"]) for ln in second["lines"]] == [
        ("usage", "45.00"), ("usage", "0.00"), ("progressive", "-20.00")]
    assert (second["number"], second["subtotal"]) == ("T-000003", "25.00")
    upcoming = catalog.ok("GET", "/v1/customers/big/upcoming-invoice")
    assert upcoming["subtotal"] == "49.00"   # 49.00 + 45.00 + 0.00 - 45.00
    clock.advance(days=27)
    close(catalog, DEC)
    period = [
        i for i in catalog.ok("GET", "/v1/invoices", params={"customer": "big"})["data"] if i.get("kind") == "period"][0]
    assert [(ln["type"], ln["amount"]) for ln in period["lines"]] == [
        ("base_fee", "49.00"), ("usage", "45.00"), ("usage", "0.00"), ("progressive", "-45.00")]
    assert "T-000002, T-000003" in period["lines"][-1]["description"]
    assert period["subtotal"] == "49.00" and period["number"] == "T-000005"  # T-000004: acme's November
    # everything billed once: 20.00 + 25.00 + 49.00 = 49.00 base fee + 45.00 usage


def test_threshold_must_be_a_positive_amount(catalog: Api) -> None:
    acme = catalog.ok("GET", "/v1/customers/acme")
    base = {k: acme[k] for k in ("name", "plan", "started_at", "billing_anchor")}
    assert error(catalog.put("/v1/customers/acme", base | {"progressive_threshold": "0"}),
                 400)["field"] == "progressive_threshold"
    assert error(catalog.put("/v1/customers/acme", base | {"progressive_threshold": "1.005"}),
                 400)["field"] == "progressive_threshold"


def test_late_usage_is_rerated_at_the_prices_it_was_invoiced_at(catalog: Api, drain: Any, clock: Any) -> None:
    send(catalog, drain, ev(1, tokens=500))
    close(catalog, NOV)
    plan = catalog.ok("GET", "/v1/plans/pro")
    catalog.ok("PUT", "/v1/plans/pro", {"currency": "USD", "base_fee": "99.00", "name": "Pro", "charges": [
        {"meter": "tokens", "model": "graduated",
         "tiers": [{"up_to": "1000", "unit_amount": "0.02"}, {"up_to": None, "unit_amount": "0.01"}]},
        {"meter": "calls", "model": "per_unit", "unit_amount": "0.001"}]})
    assert catalog.ok("GET", "/v1/plans/pro")["version"] == plan["version"] + 1
    send(catalog, drain, ev("late", ts="2026-10-31T23:59:00Z", tokens=700))
    clock.advance(days=30)
    close(catalog, DEC)
    november = invoice_for(catalog, NOV)
    # October at its own (version 1) prices: 1,200 tokens = 11.00 -> +6.00; not 1,200 at the new 0.02/0.01
    assert [(ln["type"], ln["amount"]) for ln in november["lines"]] == [
        ("base_fee", "99.00"), ("usage", "0.00"), ("usage", "0.00"), ("adjustment", "6.00")]


def test_late_usage_for_a_void_invoice_is_settled_without_billing(catalog: Api, drain: Any, clock: Any) -> None:
    send(catalog, drain, ev(1, tokens=500))
    close(catalog, NOV)
    october = invoice_for(catalog, "2026-10-01T00:00:00Z")
    catalog.ok("POST", f"/v1/invoices/{october['id']}/void", {"reference": "cancelled contract"})
    send(catalog, drain, ev("late", ts="2026-10-31T23:59:00Z", tokens=700))
    clock.advance(days=30)
    close(catalog, DEC)
    assert [ln for ln in invoice_for(catalog, NOV)["lines"] if ln["type"] == "adjustment"] == []
    assert catalog.ok("GET", "/v1/credit-notes")["data"] == []


def test_late_usage_lowering_a_fully_credited_invoice_never_blocks_billing(catalog: Api, drain: Any,
                                                                          clock: Any) -> None:
    send(catalog, drain, *[ev(i, tokens=300) for i in range(5)])
    close(catalog, NOV)
    october = invoice_for(catalog, "2026-10-01T00:00:00Z")
    catalog.post("/v1/credit-notes", {"invoice": october["id"], "amount": "61.51", "reason": "order_change"})
    send(catalog, drain, ev("refund", ts="2026-10-20T00:00:00Z", tokens=-500))
    clock.advance(days=30)
    run = close(catalog, DEC)
    assert run["errors"] == [] and len(run["invoices_created"]) == 1
    after = catalog.ok("GET", f"/v1/invoices/{october['id']}")
    assert (after["late_uncredited"], after["rerated_subtotal"]) == ("2.50", "59.01")
    assert len(catalog.ok("GET", "/v1/credit-notes")["data"]) == 1   # only the manual one


def test_late_usage_that_cannot_be_rerated_is_kept_not_dropped(catalog: Api, drain: Any, clock: Any,
                                                                 container: Any, ddb: Any) -> None:
    send(catalog, drain, ev(1, tokens=500))
    close(catalog, NOV)
    # a plan version saved before versions were archived: its copy is missing, and the plan moved on
    ddb.delete_item(TableName="t-billing", Key={"pk": {"S": "PLAN#pro"}, "sk": {"S": "V#00000001"}})
    catalog.ok("PUT", "/v1/plans/pro", {**{k: v for k, v in catalog.ok("GET", "/v1/plans/pro").items()
                                           if k in ("currency", "interval", "name", "charges")}, "base_fee": "59.00"})
    send(catalog, drain, ev("late", ts="2026-10-31T23:59:00Z", tokens=700))
    clock.advance(days=30)
    run = close(catalog, DEC)
    assert run["errors"] == [] and len(run["invoices_created"]) == 1       # billing goes on
    assert [ln["type"] for ln in invoice_for(catalog, NOV)["lines"]] == ["base_fee", "usage", "usage"]
    assert [m["sk"] for m in container.billing_store.customer_items("late", "acme")] == ["LATE#2026-10-01T00:00:00Z"]


def test_discount_durations_count_periods_not_invoices_with_progressive_billing(catalog: Api, drain: Any,
                                                                               clock: Any) -> None:
    close(catalog, NOV)  # acme's October: T-000001
    catalog.ok("PUT", "/v1/customers/big", {"name": "Big", "plan": "pro", "started_at": NOV, "billing_anchor": NOV,
                                            "progressive_threshold": "20.00"})
    catalog.ok("PUT", "/v1/customers/big/discounts/first", {"type": "percentage", "percentage": "10"})   # once
    catalog.ok("PUT", "/v1/customers/big/discounts/monthly", {"type": "fixed", "amount": "5.00", "duration": "forever"})
    send(catalog, drain, ev(1, customer="big", ts="2026-11-02T00:00:00Z", tokens=3000))
    threshold = catalog.ok("GET", "/v1/invoices/" + catalog.billing_run({})["invoices_created"][0])
    # usage 20.00: 10 % = 2.00, then 5.00 of the monthly amount
    assert [(d["discount"], d["amount"]) for d in threshold["discounts"]] == [("first", "2.00"), ("monthly", "5.00")]
    clock.advance(days=60)
    close(catalog, JAN)
    mine = {i["period"]["start"][:7]: i for i in catalog.ok("GET", "/v1/invoices", params={"customer": "big"})["data"]
            if i["kind"] == "period"}
    # November's own invoice: 49.00 + 20.00 - 20.00 = 49.00; the once discount still applies in its period
    # (10 % = 4.90) and November's 5.00 is used up by the threshold invoice
    assert [(d["discount"], d["amount"]) for d in mine["2026-11"]["discounts"]] == [("first", "4.90")]
    # December: the once discount is over; the monthly 5.00 again
    assert [(d["discount"], d["amount"]) for d in mine["2026-12"]["discounts"]] == [("monthly", "5.00")]
