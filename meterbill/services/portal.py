"""The customer portal: signed links (``domain/portal_tokens.py``) and everything one portal page
shows, read for the one customer the link names and no other.

Every read below takes the customer id from the verified token, never from the request; an invoice
asked for by id is shown only if it is that customer's (a 404 otherwise, the same answer as for an
invoice that does not exist)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from meterbill.domain import portal_tokens
from meterbill.domain.instants import from_ms, iso, parse_instant
from meterbill.domain.invoices import public_view
from meterbill.ports import BillingStore, Clock
from meterbill.services.accounts import AccountService
from meterbill.services.billing import BillingService
from meterbill.services.budgets import BudgetService
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import Conflict, InvalidField, NotFound
from meterbill.services.usage import UsageService

DEFAULT_DAYS = 7
MAX_INVOICES = 24
UNISSUED = frozenset({"draft", "finalizing"})   # not the customer's to see yet


class PortalService:
    def __init__(self, store: BillingStore, catalog: CatalogService, billing: BillingService, usage: UsageService,
                 accounts: AccountService, budgets: BudgetService, clock: Clock, secret: bytes | None,
                 base_url: str = "") -> None:
        self._store = store
        self._catalog = catalog
        self._billing = billing
        self._usage = usage
        self._accounts = accounts
        self._budgets = budgets
        self._clock = clock
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    def _key(self) -> bytes:
        if not self._secret:
            raise Conflict("the customer portal has no secret configured (METERBILL_PORTAL_SECRET)")
        return self._secret

    # -- links --------------------------------------------------------------------------------------
    def link(self, customer_id: str, days: int | None = None) -> dict[str, Any]:
        """A signed link to ``customer_id``'s portal, valid ``days`` (default 7, at most 366)."""
        self._catalog.get_customer(customer_id)  # 404 for an unknown customer
        now = self._clock().timestamp()
        expires_s = portal_tokens.expiry(now, DEFAULT_DAYS if days is None else days)
        token = portal_tokens.sign(self._key(), customer_id, expires_s)
        path = f"/portal/{quote(token, safe='')}"
        return {"customer_id": customer_id, "path": path, "url": f"{self._base_url}{path}" if self._base_url else path,
                "expires_at": iso(from_ms(expires_s * 1000))}

    def open(self, token: str) -> str:
        """The customer the token names (PortalTokenError: tampered, foreign or expired)."""
        if not self._secret:
            raise portal_tokens.TamperedToken("no portal secret configured")
        return portal_tokens.verify(self._secret, token, self._clock().timestamp()).customer_id

    def form_value(self, token: str) -> str:
        return portal_tokens.form_value(self._key(), token)

    # -- what a page shows --------------------------------------------------------------------------
    def overview(self, customer_id: str) -> dict[str, Any]:
        """The open period's running bill and usage per meter (daily points), prepaid credits,
        past invoices and the budget, of ``customer_id`` only."""
        customer = self._catalog.get_customer(customer_id)
        bill = self._billing.upcoming(customer_id)
        period = bill["period"]
        now = self._clock()
        end = min(parse_instant(period["end"], "period.end"), now + timedelta(seconds=1))
        usage = self._usage.series(customer_id, period["start"], iso(end), None, "day")
        meters = self._catalog.meters()
        invoices, _ = self._store.list_invoices(customer_id, MAX_INVOICES, None)
        try:
            budget: dict[str, Any] | None = self._budgets.view(customer_id)
        except NotFound:
            budget = None
        return {"customer": {"id": customer_id, "name": customer.get("name") or customer_id},
                "bill": public_view(bill), "usage": usage["meters"],
                "units": {code: (getattr(m, "unit", None) or "") for code, m in meters.items()},
                "credits": self._accounts.credits(customer_id),
                "invoices": [public_view(i) for i in invoices
                             if i.get("customer_id") == customer_id and i.get("status") not in UNISSUED],
                "budget": budget, "now": iso(now)}

    def invoice(self, customer_id: str, invoice_id: str) -> dict[str, Any]:
        doc = self._store.get_invoice(invoice_id)
        if doc is None or doc.get("customer_id") != customer_id or doc.get("status") in UNISSUED:
            raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
        return public_view(doc)

    def set_budget(self, customer_id: str, token: str, form: Mapping[str, str]) -> dict[str, Any]:
        """The portal's budget form: the per-token form value first (CSRF), then the budget."""
        if not portal_tokens.form_value_matches(self._key(), token, form.get("form")):
            raise InvalidField("form", "this form has expired; reload the page and send it again")
        thresholds = [t.strip() for t in (form.get("thresholds") or "").split(",") if t.strip()]
        return self._budgets.put(customer_id, {"amount": (form.get("amount") or "").strip() or None,
                                               "thresholds": thresholds or None}, "portal")
