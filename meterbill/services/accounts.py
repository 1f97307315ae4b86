"""A customer's money terms outside the plan: discounts and prepaid credit grants.

Both are items under the customer, created once by a client-chosen id (a retried PUT with the
same terms is harmless; different terms under the same id are a conflict) and consumed only in
the transaction that finalizes an invoice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meterbill.domain.adjustments import (MAX_ACTIVE_DISCOUNTS, balance, check_discount_input, discount_from_doc,
                                         grant_from_doc, parse_discount, parse_grant)
from meterbill.domain.errors import InvalidField
from meterbill.domain.instants import iso
from meterbill.domain.meters import check_code
from meterbill.domain.money import format_amount
from meterbill.ports import BillingStore, Clock, ItemChange
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import Conflict, NotFound

DISCOUNT_TERMS = ("type", "percentage", "amount", "duration", "periods", "meter", "name")
GRANT_TERMS = ("amount", "expires_at", "reason")


class AccountService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock

    def _create_once(self, kind: str, customer_id: str, item_id: str, doc: dict[str, Any],
                     terms: tuple[str, ...]) -> dict[str, Any]:
        try:
            self._store.put_customer_item(kind, customer_id, item_id, doc)
            return doc
        except Conflict:
            existing = next(d for d in self._store.customer_items(kind, customer_id) if d["id"] == item_id)
            if any(existing.get(t) != doc.get(t) for t in terms):
                raise Conflict(f"{kind} '{item_id}' already exists with different terms; use a new id",
                               field="id") from None
            return existing

    # -- discounts -------------------------------------------------------------------
    def put_discount(self, customer_id: str, discount_id: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        check_code(discount_id, "id")
        customer = self._catalog.get_customer(customer_id)
        discount = parse_discount(discount_id, raw)
        check_discount_input(raw, customer["currency"])
        active = [d for d in self.list_discounts(customer_id) if d["active"] and d["id"] != discount_id]
        if len(active) >= MAX_ACTIVE_DISCOUNTS:
            raise Conflict(f"customer '{customer_id}' already has {MAX_ACTIVE_DISCOUNTS} active discounts; "
                           "end one first", field="id")
        if discount.meter is not None:
            plan = self._catalog.plan(customer["plan"])
            if all(c.meter != discount.meter for c in plan.charges):
                raise InvalidField("meter", f"plan '{plan.code}' does not charge meter '{discount.meter}'")
        doc = {"id": discount_id, "type": discount.kind, "duration": discount.duration, "periods": discount.periods,
               "meter": discount.meter, "name": discount.name, "applied": 0, "created_at": iso(self._clock())}
        if discount.kind == "percentage":
            doc["percentage"] = format(discount.value, "f")
        else:
            doc["amount"] = format_amount(discount.value, customer["currency"])
        return self._create_once("discount", customer_id, discount_id, doc, DISCOUNT_TERMS)

    def list_discounts(self, customer_id: str) -> list[dict[str, Any]]:
        self._catalog.get_customer(customer_id)
        docs = sorted(self._store.customer_items("discount", customer_id), key=lambda d: (d["created_at"], d["id"]))
        for d in docs:
            d["active"] = not d.get("ended_at") and discount_from_doc(d).active
        return docs

    def end_discount(self, customer_id: str, discount_id: str) -> dict[str, Any]:
        """Stop a discount from the next invoice on (invoices already final keep it)."""
        found = [d for d in self.list_discounts(customer_id) if d["id"] == discount_id]
        if not found:
            raise NotFound(f"discount '{discount_id}' does not exist for customer '{customer_id}'", field="id")
        if found[0].get("ended_at"):
            return found[0]
        ended = iso(self._clock())
        self._store.apply_changes([ItemChange("discount", customer_id, discount_id, {"ended_at": ended},
                                              {"ended_at": None})])
        return {**found[0], "ended_at": ended, "active": False}

    # -- prepaid credits -------------------------------------------------------------
    def put_grant(self, customer_id: str, grant_id: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        check_code(grant_id, "id")
        customer = self._catalog.get_customer(customer_id)
        currency = customer["currency"]
        grant = parse_grant(grant_id, raw, currency, self._clock())
        doc = {"id": grant_id, "amount": format_amount(grant.amount, currency),
               "remaining": format_amount(grant.amount, currency), "currency": currency,
               "granted_at": iso(grant.granted_at),
               "expires_at": None if grant.expires_at is None else iso(grant.expires_at),
               "reason": grant.reason, "source": "grant"}
        return self._create_once("grant", customer_id, grant_id, doc, GRANT_TERMS)

    def credits(self, customer_id: str) -> dict[str, Any]:
        """The customer's prepaid credit: balance usable now, and every grant with what is left."""
        customer = self._catalog.get_customer(customer_id)
        currency = customer["currency"]
        docs = sorted(self._store.customer_items("grant", customer_id), key=lambda d: (d["granted_at"], d["id"]))
        now = self._clock()
        grants = []
        for d in docs:
            g = grant_from_doc(d)
            expired = g.expires_at is not None and g.expires_at <= now
            grants.append({**d, "status": "expired" if expired and g.remaining else
                           "used" if not g.remaining else "available"})
        return {"customer_id": customer_id, "currency": currency,
                "balance": format_amount(balance((grant_from_doc(d) for d in docs), now), currency),
                "grants": grants}


