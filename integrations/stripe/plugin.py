"""The Stripe integration: invoice sink and payment source over the official SDK (``StripeClient``).

Push (``push_invoice``, resumable and idempotent beyond Stripe's 24-hour key memory):
1. look the invoice up: list the customer's invoices (strongly consistent; never Search, which
   lags) and match ``metadata.meterbill_invoice_id``;
2. none: create a draft (``auto_advance=False``, ``pending_invoice_items_behavior="exclude"``,
   ``collection_method`` from the terms, meterbill's ids in metadata);
3. add the items the draft does not have yet (matched by ``metadata.meterbill_line_id``);
4. check Stripe's figures against meterbill's (currency, total; a customer balance Stripe would
   apply) — a difference is a ``PermanentFailure`` flagged ``totals_mismatch``, nothing finalized;
5. finalize with ``auto_advance=True`` (Stripe collects), then check ``amount_due`` again;
   the hosted invoice URL is returned as the ref's ``url`` (the invoice's ``payment_url``).
Every write carries a key derived from the dispatcher's key (``keys.derive``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

import stripe
from stripe import StripeClient
from stripe.params import (
    CreditNoteCreateParams,
    CustomerCreateParams,
    CustomerListParams,
    CustomerUpdateParams,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
)

from integrations.stripe import currency as cur
from integrations.stripe import errors, mapping, webhooks
from meterbill.integration.contract import (
    Classification,
    ExternalInvoiceState,
    ExternalRef,
    Ignored,
    PaymentEvent,
    Permanent,
    Problem,
    Retryable,
    Unknown,
)
from meterbill.integration.errors import ConfigError, InvalidWebhook, PermanentFailure
from meterbill.integration.keys import derive, idempotency_key
from meterbill.integration.settings import IntegrationSettings

STRIPE_API_VERSION = "2026-10-28.endive"   # pinned: payload shapes follow it (tests check the SDK's)
WEBHOOK_TOLERANCE_S = 300
CUSTOMER_KEY = "meterbill_customer_id"
LINE_KEY = "meterbill_line_id"
NOTE_KEY = "meterbill_credit_note_id"
FOUND_SINCE_S = 2 * 86_400                 # look-up window before meterbill's invoice was created
MAX_REPLAYED_FAILURES = 5
CREDIT_REASONS = {"duplicate", "fraudulent", "order_change", "product_unsatisfactory"}

T = TypeVar("T")


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain dicts (v15+: StripeObject is not a dict)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _epoch(iso_text: str) -> int:
    return int(datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp())


def _ref(inv: Mapping[str, Any]) -> ExternalRef:
    return ExternalRef(inv["id"], inv.get("number"), inv.get("hosted_invoice_url"))


class StripeIntegration:
    name: ClassVar[str] = "stripe"

    def __init__(self, settings: IntegrationSettings, http_client: stripe.HTTPClient | None = None) -> None:
        self._settings = settings
        self._http_client = http_client
        self._client: StripeClient | None = None

    # -- configuration -----------------------------------------------------------------------------

    def validate_config(self, settings: IntegrationSettings) -> list[Problem]:
        problems = []
        key = settings.secret("api_key")
        if key is None:
            problems.append(Problem("api_key", "is required (METERBILL_STRIPE_API_KEY or the secret store)"))
        elif not key.reveal().startswith(("sk_", "rk_")):
            problems.append(Problem("api_key", "must be a secret or restricted key (sk_… / rk_…)"))
        secret = settings.secret("webhook_secret")
        if secret is None:
            problems.append(Problem("webhook_secret", "is required to verify Stripe's webhook signatures"))
        base = settings.get("api_base")
        if base is not None and (urlparse(base).scheme not in ("http", "https") or not urlparse(base).netloc):
            problems.append(Problem("api_base", f"must be an http(s) URL such as http://127.0.0.1:4020, not {base!r}"))
        method = settings.get("collection_method", "send_invoice")
        if method not in mapping.COLLECTION_METHODS:
            problems.append(Problem("collection_method", f"must be one of {', '.join(mapping.COLLECTION_METHODS)}"))
        retries = settings.get("max_network_retries", "2") or "2"
        if not retries.isdigit() or int(retries) > 5:
            problems.append(Problem("max_network_retries", "must be a whole number from 0 to 5"))
        return problems

    @property
    def client(self) -> StripeClient:
        if self._client is None:
            problems = [p for p in self.validate_config(self._settings)
                        if p.field in ("api_key", "api_base", "max_network_retries")]
            key = self._settings.secret("api_key")
            if problems or key is None:
                raise ConfigError(self.name, problems or [Problem("api_key", "is required")])
            base = self._settings.get("api_base")
            self._client = StripeClient(
                key.reveal(), stripe_version=STRIPE_API_VERSION,
                base_addresses={"api": base} if base else None,
                max_network_retries=int(self._settings.get("max_network_retries", "2") or "2"),
                http_client=self._http_client)
        return self._client

    def _collection_default(self) -> str:
        return self._settings.get("collection_method", "send_invoice") or "send_invoice"

    # -- invoice sink --------------------------------------------------------------------------------

    def validate_invoice(self, invoice: Mapping[str, Any]) -> list[Problem]:
        return mapping.invoice_problems(invoice, self._collection_default())

    def upsert_customer(self, customer: Mapping[str, Any]) -> ExternalRef:
        """Found by ``metadata.meterbill_customer_id`` (the remembered ``cus_…`` id first, else a
        list by e-mail or of all customers), else created under a key derived from its id."""
        customer_id = customer["id"]
        name, email = str(customer.get("name") or customer_id), customer.get("email")
        found = self._remembered_customer(customer) or self._listed_customer(customer)
        if found is not None:
            changed: CustomerUpdateParams = {}
            if found.get("name") != name:
                changed["name"] = name
            if email and found.get("email") != email:
                changed["email"] = email
            if changed:
                self._update_customer(found["id"], changed, idempotency_key(
                    self.name, customer_id, "customer-update", json.dumps(changed, sort_keys=True)))
            return ExternalRef(found["id"])
        params: CustomerCreateParams = {"name": name, "metadata": {CUSTOMER_KEY: customer_id}}
        if email:
            params["email"] = email
        created = self._create("customer", lambda k: self.client.v1.customers.create(
            params=params, options={"idempotency_key": k}), idempotency_key(self.name, customer_id, "customer"))
        return ExternalRef(created["id"])

    def _update_customer(self, stripe_id: str, changed: CustomerUpdateParams, key: str) -> None:
        self.client.v1.customers.update(stripe_id, params=changed, options={"idempotency_key": key})

    def _remembered_customer(self, customer: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = ((customer.get("integrations") or {}).get(self.name) or {}).get("id")
        if not ref:
            return None
        try:
            found = _plain(self.client.v1.customers.retrieve(ref))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        ok = not found.get("deleted") and (found.get("metadata") or {}).get(CUSTOMER_KEY) == customer["id"]
        return found if ok else None

    def _listed_customer(self, customer: Mapping[str, Any]) -> dict[str, Any] | None:
        params: CustomerListParams = {"limit": 100}
        if customer.get("email"):
            params["email"] = customer["email"]
        pages = self.client.v1.customers.list(params=params)
        for c in self._each(pages):
            if (c.get("metadata") or {}).get(CUSTOMER_KEY) == customer["id"]:
                return c
        return None

    def find_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> ExternalRef | None:
        found = self._find(invoice, customer_ref)
        return _ref(found) if found is not None else None

    def _find(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> dict[str, Any] | None:
        since = _epoch(invoice.get("created_at") or invoice["issued_at"]) - FOUND_SINCE_S
        pages = self.client.v1.invoices.list(params={"customer": customer_ref.id, "created": {"gte": since},
                                                     "limit": 100})
        matches = [inv for inv in self._each(pages)
                   if (inv.get("metadata") or {}).get(webhooks.META_KEY) == invoice["id"]]
        # a finalized one wins over a stray draft; never a second create
        matches.sort(key=lambda inv: inv.get("status") == "draft")
        return matches[0] if matches else None

    def push_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        problems = self.validate_invoice(invoice)
        if problems:
            raise PermanentFailure("invalid_invoice", "; ".join(map(str, problems)))
        found = self._find(invoice, customer_ref)
        if found is not None and found.get("status") != "draft":
            return _ref(found)                          # pushed before: nothing to write
        draft = found or self._create_draft(invoice, customer_ref, idempotency_key)
        self._add_items(invoice, customer_ref, draft["id"], idempotency_key)
        self._check_before_finalize(invoice, customer_ref, draft["id"])
        final = _plain(self.client.v1.invoices.finalize_invoice(
            draft["id"], params={"auto_advance": True},
            options={"idempotency_key": derive(idempotency_key, "finalize")}))
        self._check_after_finalize(invoice, final)
        return _ref(final)

    def _create_draft(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, key: str) -> dict[str, Any]:
        method, days = mapping.collection(invoice, self._collection_default())
        period = invoice["period"]
        params: InvoiceCreateParams = {
            "customer": customer_ref.id, "currency": invoice["currency"].lower(),
            "collection_method": "send_invoice" if method == "send_invoice" else "charge_automatically",
            "auto_advance": False, "pending_invoice_items_behavior": "exclude",
            "description": f"Invoice {invoice['number']} · {period['start'][:10]} to {period['end'][:10]}",
            "metadata": {webhooks.META_KEY: invoice["id"], "meterbill_invoice_number": str(invoice["number"]),
                         CUSTOMER_KEY: str(invoice["customer_id"])},
            "custom_fields": [{"name": "Invoice number", "value": str(invoice["number"])[:140]}],
        }
        if days is not None:
            params["days_until_due"] = days
        return self._create("invoice", lambda k: self.client.v1.invoices.create(
            params=params, options={"idempotency_key": k}), derive(key, "create"))

    def _add_items(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, stripe_id: str, key: str) -> None:
        pages = self.client.v1.invoice_items.list(params={"invoice": stripe_id, "limit": 100})
        have = {(it.get("metadata") or {}).get(LINE_KEY) for it in self._each(pages)}
        currency = invoice["currency"].lower()
        for item in mapping.items(invoice):
            line_id = f"{invoice['id']}:{item.key}"
            if line_id in have:
                continue
            params: InvoiceItemCreateParams = {
                "customer": customer_ref.id, "invoice": stripe_id, "currency": currency,
                "amount": item.amount, "description": item.description[:500],
                "metadata": {webhooks.META_KEY: invoice["id"], LINE_KEY: line_id}}
            if item.period is not None:
                params["period"] = {"start": item.period[0], "end": item.period[1]}
            self._create("invoice item", functools.partial(self._create_item, params), derive(key, "item", item.key))

    def _create_item(self, params: InvoiceItemCreateParams, key: str) -> Any:
        return self.client.v1.invoice_items.create(params=params, options={"idempotency_key": key})

    def _check_before_finalize(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, stripe_id: str) -> None:
        draft = _plain(self.client.v1.invoices.retrieve(stripe_id))
        expected, currency = mapping.billed(invoice), invoice["currency"]
        if str(draft.get("currency", "")).upper() != currency or draft.get("total") != expected:
            raise PermanentFailure("totals_mismatch", (
                f"Stripe draft {stripe_id} totals {draft.get('total')} {str(draft.get('currency')).upper()} "
                f"(minor units); meterbill billed {expected} {currency}: not finalized"))
        balance = _plain(self.client.v1.customers.retrieve(customer_ref.id)).get("balance") or 0
        if balance and expected > 0:
            raise PermanentFailure("customer_balance", (
                f"Stripe customer {customer_ref.id} has a balance of {balance} (minor units) that Stripe would apply "
                f"to invoice {invoice['number']}; meterbill already applied its credits: not finalized"))

    def _check_after_finalize(self, invoice: Mapping[str, Any], final: Mapping[str, Any]) -> None:
        expected = mapping.billed(invoice)
        below_minimum = expected > 0 and final.get("status") == "paid" and (final.get("amount_paid") or 0) < expected
        if final.get("amount_due") != expected or below_minimum:
            raise PermanentFailure("amount_due_mismatch", (
                f"Stripe invoice {final.get('id')} asks {final.get('amount_due')} (status {final.get('status')}); "
                f"meterbill billed {expected} (minor units of {invoice['currency']})"))

    def void_invoice(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        current = self._own_invoice(invoice, invoice_ref.id)
        status = current.get("status")
        if status == "void":
            return _ref(current)
        if status == "paid":
            raise PermanentFailure("paid_in_stripe", f"Stripe invoice {invoice_ref.id} is paid: credit it, not void")
        if status == "draft":                        # never finalized: a draft is deleted, not voided
            self.client.v1.invoices.delete(invoice_ref.id)
            return _ref(current)
        return self._void(invoice_ref.id, derive(idempotency_key, "void"))

    def _void(self, stripe_id: str, key: str) -> ExternalRef:
        return _ref(_plain(self.client.v1.invoices.void_invoice(stripe_id, options={"idempotency_key": key})))

    def push_credit_note(self, note: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        """Looked up first (``metadata.meterbill_credit_note_id``); the part Stripe's invoice no longer
        has open is ``out_of_band_amount``: meterbill keeps it as the customer's credit, so Stripe must
        not refund it or add it to the Stripe balance (it would be applied twice)."""
        found = self._credit_note(note["id"], invoice_ref.id)
        if found is not None:
            return found
        current = self._own_invoice({"id": note["invoice_id"]}, invoice_ref.id)
        unpaid = int(current.get("amount_remaining") or 0) if current.get("status") == "open" else 0
        return self._create_credit_note(note, invoice_ref.id, unpaid, derive(idempotency_key, "credit-note"))

    def _credit_note(self, note_id: str, stripe_id: str) -> ExternalRef | None:
        pages = self.client.v1.credit_notes.list(params={"invoice": stripe_id, "limit": 100})
        for cn in self._each(pages):
            if (cn.get("metadata") or {}).get(NOTE_KEY) == note_id:
                return ExternalRef(cn["id"], cn.get("number"), cn.get("pdf"))
        return None

    def _create_credit_note(self, note: Mapping[str, Any], stripe_id: str, unpaid: int, key: str) -> ExternalRef:
        amount = cur.to_minor(note["total"], note["currency"])
        params: CreditNoteCreateParams = {
            "invoice": stripe_id, "amount": amount,
            "memo": f"{note['number']}: {note.get('memo') or note.get('reason') or ''}"[:500],
            "metadata": {NOTE_KEY: note["id"], "meterbill_credit_note_number": str(note["number"])}}
        if note.get("reason") in CREDIT_REASONS:
            params["reason"] = note["reason"]
        if amount > unpaid:
            params["out_of_band_amount"] = amount - unpaid
        cn = self._create("credit note", lambda k: self.client.v1.credit_notes.create(
            params=params, options={"idempotency_key": k}), key)
        return ExternalRef(cn["id"], cn.get("number"), cn.get("pdf"))

    def record_payment(self, invoice: Mapping[str, Any], payment: Mapping[str, Any], invoice_ref: ExternalRef,
                       idempotency_key: str) -> ExternalRef:
        """An out-of-band payment recorded in meterbill: the Stripe invoice is marked paid out of band
        once meterbill's invoice is fully paid (Stripe has no partial out-of-band payment on this API);
        payments that came from Stripe are not sent back."""
        current = self._own_invoice(invoice, invoice_ref.id)
        fully_paid = invoice.get("status") == "paid" or Decimal(str(payment.get("amount", "0"))) >= Decimal(
            str(invoice.get("amount_due", invoice["total"])))
        if payment.get("source") == self.name or not fully_paid or current.get("status") == "paid":
            return _ref(current)
        if current.get("status") not in ("open", "uncollectible"):
            raise PermanentFailure("not_payable", f"Stripe invoice {invoice_ref.id} is {current.get('status')}")
        return self._pay_out_of_band(invoice_ref.id, derive(idempotency_key, "pay"))

    def _pay_out_of_band(self, stripe_id: str, key: str) -> ExternalRef:
        return _ref(_plain(self.client.v1.invoices.pay(stripe_id, params={"paid_out_of_band": True},
                                                       options={"idempotency_key": key})))

    def notify(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, notice: Mapping[str, Any],
               idempotency_key: str) -> ExternalRef | None:
        """A dunning reminder is Stripe's own invoice e-mail (``invoices.send_invoice``), only where
        Stripe collects by sending the invoice (``send_invoice``) and the Stripe invoice is still
        open; ``charge_automatically`` invoices are chased by Stripe's own retries, and an overdue
        notice has no Stripe counterpart (None: nothing to do here)."""
        method, _ = mapping.collection(invoice, self._collection_default())
        if notice.get("kind") != "reminder" or method != "send_invoice":
            return None
        current = self._own_invoice(invoice, invoice_ref.id)
        if current.get("status") != "open":
            return None
        return self._send(invoice_ref.id, derive(idempotency_key, "send"))

    def _send(self, stripe_id: str, key: str) -> ExternalRef:
        return _ref(_plain(self.client.v1.invoices.send_invoice(stripe_id, options={"idempotency_key": key})))

    def classify(self, exc: BaseException) -> Classification:
        found = errors.classify(exc)
        if isinstance(found, Retryable):
            return Retryable(self._settings.redact(found.reason), found.after_s)
        if isinstance(found, Permanent):
            return Permanent(self._settings.redact(found.reason))
        return Unknown(self._settings.redact(found.reason))

    # -- payment source ------------------------------------------------------------------------------

    def parse_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> PaymentEvent | Ignored:
        """Verify the signature over the exact raw body (300 s tolerance), then map the event."""
        secret = self._settings.secret("webhook_secret")
        if secret is None:
            raise ConfigError(self.name, [Problem("webhook_secret", "is required")])
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        if not signature:
            raise InvalidWebhook("the Stripe-Signature header is missing")
        try:
            self.client.construct_event(raw_body, signature, secret.reveal(), tolerance=WEBHOOK_TOLERANCE_S)
            event = json.loads(raw_body)
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(f"the Stripe signature does not verify: {exc.user_message}") from None
        except ValueError as exc:
            raise InvalidWebhook(f"the webhook body is not a Stripe snapshot event: {exc}") from None
        return webhooks.to_payment_event(event, self._invoice_for_payment_intent)

    def _invoice_for_payment_intent(self, payment_intent: str) -> dict[str, Any] | None:
        found = self.client.v1.invoice_payments.list(params={
            "payment": {"type": "payment_intent", "payment_intent": payment_intent}, "limit": 1})
        for payment in _plain(found).get("data") or []:
            invoice = payment.get("invoice")
            invoice_id = invoice.get("id") if isinstance(invoice, Mapping) else invoice
            if invoice_id:
                return _plain(self.client.v1.invoices.retrieve(invoice_id))
        return None

    def fetch_invoice_state(self, external_id: str) -> ExternalInvoiceState:
        inv = _plain(self.client.v1.invoices.retrieve(external_id))
        currency = str(inv.get("currency") or "").upper()
        return ExternalInvoiceState(
            external_id=inv["id"], meterbill_invoice_id=(inv.get("metadata") or {}).get(webhooks.META_KEY),
            status=webhooks.STATUS.get(str(inv.get("status"))), currency=currency,
            total=cur.from_minor(int(inv.get("total") or 0), currency),
            amount_due=cur.from_minor(int(inv.get("amount_due") or 0), currency),
            amount_paid=cur.from_minor(int(inv.get("amount_paid") or 0), currency),
            number=inv.get("number"), url=inv.get("hosted_invoice_url"))

    # -- helpers ---------------------------------------------------------------------------------------

    def _own_invoice(self, invoice: Mapping[str, Any], stripe_id: str) -> dict[str, Any]:
        """The Stripe invoice, checked to be meterbill's ``invoice`` (never trust an id alone)."""
        current = _plain(self.client.v1.invoices.retrieve(stripe_id))
        if (current.get("metadata") or {}).get(webhooks.META_KEY) != invoice["id"]:
            raise PermanentFailure("wrong_invoice", f"Stripe invoice {stripe_id} is not meterbill's {invoice['id']}")
        return current

    def _create(self, what: str, call: Callable[[str], Any], key: str) -> dict[str, Any]:
        """Create, under ``key``. Every create here follows a look-up that found nothing, so a
        *replayed* 5xx (Stripe saves a failed first attempt's response under its key and replays
        it for 24 h) means that attempt created nothing: try again under a key derived from the
        failed request's id — still deterministic, never stuck on the saved failure."""
        for _ in range(MAX_REPLAYED_FAILURES + 1):
            try:
                return _plain(call(key))
            except stripe.StripeError as exc:
                replayed = (errors.header(exc.headers, "idempotent-replayed") == "true"
                            and (exc.http_status or 0) >= 500 and exc.request_id)
                if not replayed:
                    raise errors.CreateFailed(what, exc) from exc
                key = derive(key, "after", str(exc.request_id))
        raise errors.CreateFailed(what, stripe.APIError(f"{MAX_REPLAYED_FAILURES} saved failures in a row"))

    @staticmethod
    def _each(page: Any) -> Iterator[dict[str, Any]]:
        for obj in page.auto_paging_iter():
            yield _plain(obj)
