"""Xero: every final invoice as one ``ACCREC`` sales invoice, payments and credit notes mirrored,
over the official SDK (``xero-python``, ``AccountingApi``).

Push (``push_invoice``, resumable; exactly one Xero invoice per meterbill invoice):
1. look it up by **invoice number** (``GET /Invoices?InvoiceNumbers=…``, ACCREC) and check its
   ``Reference`` is meterbill's invoice id (never trust a number or an id alone);
2. none: create it with **PUT** (``create_invoices``: PUT only creates; POST would overwrite an
   invoice with the same number) as a ``DRAFT``, ``InvoiceNumber`` = meterbill's number,
   ``Reference`` = meterbill's invoice id, an ``Idempotency-Key`` derived from the dispatcher's, lines
   from ``mapping.lines`` (account code and tax type per meter, unit prices with 4 decimals,
   ``TaxAmount`` per line adding up to meterbill's tax), ``LineAmountTypes`` from ``tax_inclusive``;
3. check Xero's totals against meterbill's (a difference → ``PermanentFailure("totals_mismatch")``,
   the invoice stays a draft for someone to look at);
4. ``AUTHORISED`` (an approved invoice, payments can be applied).

Auth: OAuth2 through the SDK's own token handling (``OAuth2Token``, its token getter/saver): a
**custom connection** (client credentials, one organisation: ``grant_type=client_credentials``,
the default) or a standard app's **refresh token** (``grant_type=refresh_token``; Xero rotates it
on each refresh: the new one is written back with ``settings.store("refresh_token", …)`` — SSM or
Secrets Manager, wherever the settings came from — and ``on_token`` receives every new token).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

from xero_python.accounting import (
    AccountingApi,
    Allocation,
    Allocations,
    Contact,
    Contacts,
    CreditNote,
    CreditNotes,
    CurrencyCode,
    Invoice,
    Invoices,
    LineAmountTypes,
    LineItem,
    Payment,
    Payments,
)
from xero_python.accounting import Account as XeroAccount
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi

from integrations.xero import errors, mapping
from meterbill.integration.contract import Classification, ExternalRef, Problem, redacted
from meterbill.integration.errors import ConfigError, CreateFailed, PermanentFailure
from meterbill.integration.keys import derive, idempotency_key
from meterbill.integration.settings import IntegrationSettings

GRANTS = ("client_credentials", "refresh_token")
DEFAULT_SCOPES = "offline_access accounting.invoices accounting.payments accounting.contacts accounting.settings"
MAX_KEY = 128                               # Xero: Idempotency-Key "128 character max"
TIMEOUT = (5.0, 60.0)                       # (connect, read) seconds: invoice calls are slow
TOKEN_MARGIN_S = 60
INVOICE_URL = "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={}"
DONE = ("AUTHORISED", "PAID", "VOIDED")

T = TypeVar("T")


def xero_key(key: str) -> str:
    """``key`` within Xero's 128 characters: its head and a digest of all of it when longer."""
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{key[:MAX_KEY - len(digest) - 1]}~{digest}"


def _quote(value: str) -> str:
    """A string literal in Xero's ``where`` filter."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _day(iso_text: str) -> date:
    return date.fromisoformat(iso_text[:10])


class _TokenEndpoint:
    """The SDK's HTTP pool, with its fixed identity endpoint (``TokenApi``'s class attributes,
    https://identity.xero.com/connect/token) sent to the ``identity_url`` setting instead: a local
    stand-in (``meterbill run``); every other request passes unchanged."""

    def __init__(self, pool: Any, identity_url: str) -> None:
        self._pool = pool
        self._url = identity_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url in (TokenApi.refresh_token_url, TokenApi.client_credentials_token_url):
            url = self._url
        return self._pool.request(method, url, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class XeroIntegration:
    name: ClassVar[str] = "xero"

    def __init__(self, settings: IntegrationSettings, http: Any = None,
                 token: Mapping[str, Any] | None = None,
                 on_token: Callable[[dict[str, Any]], None] | None = None) -> None:
        """``http``: a urllib3 ``PoolManager`` stand-in (tests); ``token``: a token already held
        (e.g. stored after the last refresh); ``on_token``: called with every new token."""
        self._settings = settings
        self._http = http
        self._token: dict[str, Any] | None = dict(token) if token else None
        self._on_token = on_token
        self._api: AccountingApi | None = None
        self._accounts, _ = mapping.parse_accounts(settings.get("account_codes"))

    # -- configuration -----------------------------------------------------------------------------

    def validate_config(self, settings: IntegrationSettings) -> list[Problem]:
        problems = []
        if not settings.get("client_id"):
            problems.append(Problem("client_id", "is required (the Xero app's client id)"))
        if settings.secret("client_secret") is None:
            problems.append(Problem("client_secret", "is required (METERBILL_XERO_CLIENT_SECRET or the secret store)"))
        if not settings.get("tenant_id"):
            problems.append(Problem("tenant_id", "is required (the Xero organisation's tenant id)"))
        grant = settings.get("grant_type", "client_credentials")
        if grant not in GRANTS:
            problems.append(Problem("grant_type", f"must be one of {', '.join(GRANTS)}"))
        elif grant == "refresh_token" and settings.secret("refresh_token") is None:
            problems.append(Problem("refresh_token", "is required with grant_type=refresh_token"))
        base = settings.get("api_base")
        if base is not None and (urlparse(base).scheme not in ("http", "https") or not urlparse(base).netloc):
            problems.append(Problem("api_base", f"must be an http(s) URL such as http://127.0.0.1:4012, not {base!r}"))
        identity_url = settings.get("identity_url")
        if identity_url is not None and (urlparse(identity_url).scheme not in ("http", "https") or not urlparse(identity_url).netloc):
            problems.append(Problem("identity_url", f"must be an http(s) URL, not {identity_url!r}"))
        if not settings.get("payment_account_code"):
            problems.append(Problem("payment_account_code", "is required: the Xero bank account payments go to"))
        problems += mapping.parse_accounts(settings.get("account_codes"))[1]
        return problems

    def _get_token(self) -> dict[str, Any]:
        if self._token is None:                   # refresh-token grant, first call: the SDK refreshes
            refresh = self._settings.secret("refresh_token")
            self._token = {"access_token": None, "refresh_token": refresh.reveal() if refresh else None,
                           "scope": (self._settings.get("scopes") or DEFAULT_SCOPES).split(),
                           "expires_in": 0, "expires_at": 0, "token_type": "Bearer", "id_token": None}
        return self._token

    def _save_token(self, token: Mapping[str, Any]) -> None:
        self._token = dict(token)
        if not self._token.get("expires_at") and self._token.get("expires_in"):
            # the SDK dates refreshed tokens itself, client-credentials ones not
            self._token["expires_at"] = time.time() + float(self._token["expires_in"])
        rotated = token.get("refresh_token")
        held = self._settings.secret("refresh_token")
        if rotated and (held is None or held.reveal() != rotated):
            # Xero rotates the refresh token on every refresh (the old one dies after a grace
            # period): written back to the settings' store, so the next cold start holds a live one
            self._settings.store("refresh_token", str(rotated))
        if self._on_token is not None:
            self._on_token(dict(token))

    @property
    def api(self) -> AccountingApi:
        """The SDK's API; a custom connection fetches a fresh client-credentials token when the
        one held is missing or about to expire (the SDK refreshes refresh-token grants itself)."""
        if self._api is None:
            problems = [p for p in self.validate_config(self._settings) if p.field in (
                "client_id", "client_secret", "tenant_id", "grant_type", "refresh_token", "api_base")]
            secret = self._settings.secret("client_secret")
            if problems or secret is None:
                raise ConfigError(self.name, problems or [Problem("client_secret", "is required")])
            client = ApiClient(Configuration(oauth2_token=OAuth2Token(
                client_id=self._settings.get("client_id"), client_secret=secret.reveal())),
                oauth2_token_getter=self._get_token, oauth2_token_saver=self._save_token)
            if self._http is not None:
                client.rest_client.pool_manager = self._http
            if self._settings.get("identity_url"):
                client.rest_client.pool_manager = _TokenEndpoint(client.rest_client.pool_manager,
                                                                 str(self._settings.get("identity_url")))
            self._api = AccountingApi(client, base_url=self._settings.get("api_base") or None)
        if self._settings.get("grant_type", "client_credentials") == "client_credentials":
            held = self._token or {}
            if not held.get("access_token") or float(held.get("expires_at") or 0) < time.time() + TOKEN_MARGIN_S:
                self._api.api_client.get_client_credentials_token()
        return self._api

    @property
    def tenant(self) -> str:
        return self._settings.get("tenant_id") or ""

    # -- invoice sink --------------------------------------------------------------------------------

    def validate_invoice(self, invoice: Mapping[str, Any]) -> list[Problem]:
        found = mapping.problems(invoice, self._accounts)
        if not found:
            try:
                CurrencyCode[invoice["currency"]]
            except KeyError:
                found.append(Problem("currency", f"Xero does not take {invoice['currency']}"))
        return found

    def upsert_customer(self, customer: Mapping[str, Any]) -> ExternalRef:
        """Found by ``ContactNumber`` = meterbill's customer id (the remembered ContactID first),
        else a contact of the same name without a number is adopted (Xero contact names are
        unique), else created under a key derived from the customer id."""
        customer_id = str(customer["id"])
        name, email = str(customer.get("name") or customer_id), customer.get("email")
        found = self._contact_by_number(customer_id)
        if found is None:
            same_name = self._contacts(f"Name=={_quote(name)}")
            found = next((c for c in same_name if not c.contact_number), None)
        if found is not None:
            if found.contact_number != customer_id or found.name != name or (email and found.email_address != email):
                update = Contact(contact_id=found.contact_id, name=name, contact_number=customer_id,
                                 email_address=email or found.email_address)
                self.api.update_contact(self.tenant, found.contact_id, Contacts(contacts=[update]),
                                        idempotency_key=xero_key(idempotency_key(self.name, customer_id, "contact-update",
                                                                                 name, email or "-")),
                                        _request_timeout=TIMEOUT)
            return ExternalRef(found.contact_id, customer_id)
        return self._create_contact(customer_id, name, email)

    def _create_contact(self, customer_id: str, name: str, email: str | None) -> ExternalRef:
        contact = Contact(name=name, contact_number=customer_id, email_address=email)
        created = self._create("contact", lambda k: self.api.create_contacts(
            self.tenant, Contacts(contacts=[contact]), idempotency_key=k,
            _request_timeout=TIMEOUT), idempotency_key(self.name, customer_id, "contact"))
        return ExternalRef(created.contacts[0].contact_id, customer_id)

    def _contact_by_number(self, customer_id: str) -> Any:
        return next((c for c in self._contacts(f"ContactNumber=={_quote(customer_id)}")
                     if c.contact_number == customer_id), None)

    def _contacts(self, where: str) -> list[Any]:
        return list(self.api.get_contacts(self.tenant, where=where, page=1, _request_timeout=TIMEOUT).contacts or [])

    def find_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> ExternalRef | None:
        found = self._find(invoice)
        return self._ref(found) if found is not None else None

    def _find(self, invoice: Mapping[str, Any]) -> Any:
        """The Xero invoice numbered like meterbill's and referring to it (not deleted)."""
        page = self.api.get_invoices(self.tenant, where='Type=="ACCREC"', invoice_numbers=[str(invoice["number"])],
                                     unitdp=mapping.UNIT_DP, page=1, _request_timeout=TIMEOUT)
        same = [inv for inv in page.invoices or [] if inv.invoice_number == invoice["number"]
                and str(inv.status) != "DELETED"]
        ours = [inv for inv in same if inv.reference == invoice["id"]]
        if same and not ours:
            raise PermanentFailure("number_taken", (
                f"Xero already has invoice number {invoice['number']} for another document "
                f"(Reference {same[0].reference!r}, not {invoice['id']})"))
        return ours[0] if ours else None

    def push_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        problems = self.validate_invoice(invoice)
        if problems:
            raise PermanentFailure("invalid_invoice", "; ".join(map(str, problems)))
        found = self._find(invoice)
        if found is not None and str(found.status) in DONE:
            return self._ref(found)                                 # pushed before: nothing to write
        draft = found if found is not None else self._create_draft(invoice, customer_ref, idempotency_key)
        self._check_totals(invoice, draft)
        return self._authorise(draft.invoice_id, derive(idempotency_key, "authorise"))

    def _invoice_model(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> Invoice:
        items = [LineItem(description=ln.description, quantity=ln.quantity, unit_amount=ln.unit_amount,
                          account_code=ln.account.code, tax_type=ln.account.tax_type, tax_amount=ln.tax_amount)
                 for ln in mapping.lines(invoice, self._accounts)]
        return Invoice(type="ACCREC", contact=Contact(contact_id=customer_ref.id), line_items=items,
                       date=_day(invoice["issued_at"]), due_date=_day(invoice["due_at"]),
                       line_amount_types=LineAmountTypes.INCLUSIVE if invoice.get("tax_inclusive")
                       else LineAmountTypes.EXCLUSIVE,
                       invoice_number=str(invoice["number"]), reference=str(invoice["id"]),
                       currency_code=CurrencyCode[invoice["currency"]], status="DRAFT")

    def _create_draft(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, key: str) -> Any:
        model = self._invoice_model(invoice, customer_ref)
        created = self._create("invoice", lambda k: self.api.create_invoices(
            self.tenant, Invoices(invoices=[model]), unitdp=mapping.UNIT_DP,
            idempotency_key=k, _request_timeout=TIMEOUT), derive(key, "create"))
        return created.invoices[0]

    def _check_totals(self, invoice: Mapping[str, Any], draft: Any) -> None:
        expected, tax = mapping.expected_total(invoice), Decimal(invoice.get("tax_total") or "0")
        total, total_tax = Decimal(str(draft.total)), Decimal(str(draft.total_tax))
        if total != expected or total_tax != tax or str(draft.currency_code.value if hasattr(
                draft.currency_code, "value") else draft.currency_code) != invoice["currency"]:
            raise PermanentFailure("totals_mismatch", (
                f"Xero invoice {draft.invoice_id} totals {total} (tax {total_tax}); meterbill billed {expected} "
                f"(tax {tax}) {invoice['currency']}: left as a draft"))

    def _authorise(self, invoice_id: str, key: str) -> ExternalRef:
        update = Invoice(invoice_id=invoice_id, status="AUTHORISED")
        done = self.api.update_invoice(self.tenant, invoice_id, Invoices(invoices=[update]),
                                       unitdp=mapping.UNIT_DP, idempotency_key=xero_key(key), _request_timeout=TIMEOUT)
        return self._ref(done.invoices[0])

    def void_invoice(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        """Authorised and unpaid → ``VOIDED``; a draft → ``DELETED``; paid or credited → refused
        (credit it instead)."""
        current = self._own_invoice(invoice["id"], invoice_ref.id)
        status = str(current.status)
        if status in ("VOIDED", "DELETED"):
            return self._ref(current)
        if status == "PAID" or Decimal(str(current.amount_paid or 0)) or Decimal(str(current.amount_credited or 0)):
            raise PermanentFailure("paid_in_xero", f"Xero invoice {invoice_ref.id} has payments or credits: "
                                                   "credit it, not void")
        target = "DELETED" if status in ("DRAFT", "SUBMITTED") else "VOIDED"
        update = Invoice(invoice_id=invoice_ref.id, status=target)
        done = self.api.update_invoice(self.tenant, invoice_ref.id, Invoices(invoices=[update]),
                                       idempotency_key=xero_key(derive(idempotency_key, "void")),
                                       _request_timeout=TIMEOUT)
        return self._ref(done.invoices[0])

    def push_credit_note(self, note: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        """An ``ACCRECCREDIT`` numbered like meterbill's note (``Reference`` = its id), found by
        number first; the part meterbill credited to the invoice is allocated to it."""
        current = self._own_invoice(note["invoice_id"], invoice_ref.id)
        found = self._credit_note(note)
        if found is None:
            found = self._create_credit_note(note, current, derive(idempotency_key, "credit-note"))
        self._allocate(note, found, invoice_ref.id, derive(idempotency_key, "allocate"))
        return ExternalRef(found.credit_note_id, found.credit_note_number)

    def _credit_note(self, note: Mapping[str, Any]) -> Any:
        page = self.api.get_credit_notes(self.tenant, where=f"CreditNoteNumber=={_quote(str(note['number']))}",
                                         page=1, _request_timeout=TIMEOUT)
        return next((cn for cn in page.credit_notes or [] if cn.reference == note["id"]
                     and str(cn.status) != "DELETED"), None)

    def _credit_note_model(self, note: Mapping[str, Any], contact_id: str) -> CreditNote:
        account = mapping.account_for(self._accounts, "@credit_note")
        if account is None:
            raise PermanentFailure("invalid_credit_note", "no Xero account code mapped for '@credit_note' "
                                                          "(METERBILL_XERO_ACCOUNT_CODES)")
        subtotal = Decimal(note["subtotal"])
        line = LineItem(description=f"{note['number']} for {note.get('invoice_number')}: "
                                    f"{note.get('memo') or note.get('reason') or ''}"[:mapping.MAX_DESCRIPTION],
                        quantity=Decimal(1), unit_amount=subtotal, account_code=account.code,
                        tax_type=account.tax_type, tax_amount=Decimal(note.get("tax_total") or "0"))
        return CreditNote(type="ACCRECCREDIT", contact=Contact(contact_id=contact_id), date=_day(note["created_at"]),
                          line_amount_types=LineAmountTypes.INCLUSIVE if note.get("tax_inclusive")
                          else LineAmountTypes.EXCLUSIVE,
                          line_items=[line], credit_note_number=str(note["number"]), reference=str(note["id"]),
                          currency_code=CurrencyCode[note["currency"]], status="AUTHORISED")

    def _create_credit_note(self, note: Mapping[str, Any], invoice: Any, key: str) -> Any:
        model = self._credit_note_model(note, invoice.contact.contact_id)
        created = self._create("credit note", lambda k: self.api.create_credit_notes(
            self.tenant, CreditNotes(credit_notes=[model]), unitdp=mapping.UNIT_DP,
            idempotency_key=k, _request_timeout=TIMEOUT), key)
        return created.credit_notes[0]

    def _allocate(self, note: Mapping[str, Any], credit_note: Any, invoice_id: str, key: str) -> None:
        amount = Decimal(note.get("credited_to_invoice") or "0")
        already = any(a.invoice is not None and a.invoice.invoice_id == invoice_id
                      for a in credit_note.allocations or [])
        if amount <= 0 or already:
            return
        allocation = Allocation(invoice=Invoice(invoice_id=invoice_id), amount=amount, date=_day(note["created_at"]))
        self._create("credit note allocation", lambda k: self.api.create_credit_note_allocation(
            self.tenant, credit_note.credit_note_id, Allocations(allocations=[allocation]),
            idempotency_key=k, _request_timeout=TIMEOUT), key)

    def record_payment(self, invoice: Mapping[str, Any], payment: Mapping[str, Any], invoice_ref: ExternalRef,
                       idempotency_key: str) -> ExternalRef:
        """A payment (``{amount, date, reference}``, from Stripe or recorded offline) applied in Xero
        (``PUT /Payments``) to the bank account ``payment_account_code``; found first among the
        invoice's payments by date, amount and reference. Never more than Xero still has due."""
        current = self._own_invoice(invoice["id"], invoice_ref.id)
        amount = min(Decimal(str(payment["amount"])), Decimal(str(current.amount_due or 0)))
        reference = self._payment_reference(payment)
        day = _day(str(payment["date"]))
        for p in current.payments or []:
            if p.reference == reference and p.date == day:
                return ExternalRef(p.payment_id, reference)
        if str(current.status) == "PAID" or amount <= 0:
            return self._ref(current)
        if str(current.status) != "AUTHORISED":
            raise PermanentFailure("not_payable", f"Xero invoice {invoice_ref.id} is {current.status}")
        model = Payment(invoice=Invoice(invoice_id=invoice_ref.id),
                        account=XeroAccount(code=self._settings.get("payment_account_code")),
                        date=day, amount=amount, reference=reference)
        created = self._create("payment", functools.partial(self._put_payment, model), derive(idempotency_key, "payment"))
        return ExternalRef(created.payments[0].payment_id, reference)

    def _put_payment(self, model: Payment, key: str) -> Any:
        """``PUT /Payments`` (create, with an Idempotency-Key). ``summarizeErrors`` is left to Xero's
        default: the SDK would send Python's "False", which the spec's boolean refuses (Prism)."""
        return self.api.create_payments(self.tenant, Payments(payments=[model]), idempotency_key=key,
                                        _request_timeout=TIMEOUT)

    @staticmethod
    def _payment_reference(payment: Mapping[str, Any]) -> str:
        ref = str(payment.get("reference") or payment.get("id") or "meterbill payment")
        return ref[:255]

    def classify(self, exc: BaseException) -> Classification:
        return redacted(errors.classify(exc), self._settings)

    # -- helpers ---------------------------------------------------------------------------------------

    def _own_invoice(self, meterbill_id: str, xero_id: str) -> Any:
        """The Xero invoice, checked to be meterbill's (``Reference``): never trust an id alone."""
        found = self.api.get_invoice(self.tenant, xero_id, unitdp=mapping.UNIT_DP, _request_timeout=TIMEOUT)
        current = (found.invoices or [None])[0]
        if current is None or current.reference != meterbill_id:
            raise PermanentFailure("wrong_invoice", f"Xero invoice {xero_id} is not meterbill's {meterbill_id}")
        return current

    @staticmethod
    def _ref(inv: Any) -> ExternalRef:
        return ExternalRef(inv.invoice_id, inv.invoice_number, INVOICE_URL.format(inv.invoice_id))

    def _create(self, what: str, call: Callable[[str], T], key: str) -> T:
        try:
            return call(xero_key(key))
        except Exception as exc:
            raise CreateFailed(self.name, what, exc) from exc
