"""HubSpot: each customer as a company, each final invoice as a HubSpot invoice associated with it,
payment status kept current, a task on the company when a payment fails or an invoice is overdue.
Over the official SDK (``hubspot-api-client``: the CRM objects API and associations v4).

HubSpot has no idempotency header and its search lags, so nothing is ever searched-then-created:
- companies, contacts, invoices and line items are **upserted by a unique property**
  (``batch/upsert`` with ``idProperty``: ``meterbill_customer_id``, ``email``,
  ``meterbill_invoice_id``, ``meterbill_line_id``), so a retried write updates what the first made;
- an invoice is found before anything is written by reading it **by that unique property**
  (``GET /crm/v3/objects/invoices/{meterbill id}?idProperty=meterbill_invoice_id``: a read by key,
  not a search);
- associations (v4 "default") are idempotent by nature;
- tasks and notes have no unique property: the company's tasks/notes are read through its
  associations and matched on a marker carrying the idempotency key before one is created.

Push: contact (by e-mail) and company associated; the invoice upserted as a draft, its line items
upserted and associated, invoice ↔ company and contact associated; then ``hs_invoice_status=open``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicDefaultAssociationMultiPost, PublicDefaultAssociationMultiPost
from hubspot.crm.associations.v4 import PublicObjectId as AssociatedObject
from hubspot.crm.objects import (
    AssociationSpec,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.discovery.discovery_base import DiscoveryBase
from urllib3.util.retry import Retry

from integrations.hubspot import errors, mapping
from meterbill.integration.contract import Classification, ExternalRef, Problem, redacted
from meterbill.integration.errors import ConfigError, CreateFailed, PermanentFailure
from meterbill.integration.settings import IntegrationSettings

TIMEOUT = (5.0, 30.0)                          # (connect, read) seconds
BATCH = 100                                    # HubSpot's batch limit
MAX_PAGES = 50
# HubSpot-defined association type ids (developers.hubspot.com, "association type IDs")
TASK_TO_COMPANY = 192
NOTE_TO_COMPANY = 190
INVOICE_PROPS = [mapping.INVOICE_KEY, "hs_invoice_status", "hs_number", mapping.STATUS]

T = TypeVar("T")


def _chunks(rows: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _props(obj: Any) -> dict[str, Any]:
    return dict(getattr(obj, "properties", None) or {})


class HubSpotIntegration:
    name: ClassVar[str] = "hubspot"

    def __init__(self, settings: IntegrationSettings, http: Any = None) -> None:
        """``http``: a urllib3 ``PoolManager`` stand-in put under every SDK API object (tests)."""
        self._settings = settings
        self._http = http
        self._client: HubSpot | None = None
        self._apis: dict[str, Any] = {}

    # -- configuration -----------------------------------------------------------------------------

    def validate_config(self, settings: IntegrationSettings) -> list[Problem]:
        problems = []
        if settings.secret("access_token") is None:
            problems.append(Problem("access_token", "is required: a private app's access token "
                                                    "(METERBILL_HUBSPOT_ACCESS_TOKEN or the secret store)"))
        base = settings.get("api_base")
        if base is not None and (urlparse(base).scheme not in ("http", "https") or not urlparse(base).netloc):
            problems.append(Problem("api_base", f"must be an http(s) URL such as http://127.0.0.1:4010, not {base!r}"))
        owner = settings.get("task_owner_id")
        if owner is not None and not owner.isdigit():
            problems.append(Problem("task_owner_id", "must be a HubSpot owner id (digits)"))
        return problems

    def _factory(self, package: Any, api_name: str, config: dict[str, Any]) -> Any:
        api = DiscoveryBase._default_api_factory(package, api_name, config)
        if self._http is not None:
            api.api_client.rest_client.pool_manager = self._http
        return api

    def _api(self, which: str) -> Any:
        """``objects`` / ``batch`` (CRM objects, any type) or ``assoc`` / ``assoc_batch`` (v4)."""
        if self._client is None:
            problems = self.validate_config(self._settings)
            token = self._settings.secret("access_token")
            if problems or token is None:
                raise ConfigError(self.name, problems or [Problem("access_token", "is required")])
            extra = {"host": self._settings.get("api_base")} if self._settings.get("api_base") else {}
            self._client = HubSpot(access_token=token.reveal(), retry=Retry(total=0), api_factory=self._factory,
                                   **extra)
        if which not in self._apis:
            crm = self._client.crm
            self._apis[which] = {"objects": lambda: crm.objects.basic_api, "batch": lambda: crm.objects.batch_api,
                                 "assoc": lambda: crm.associations.v4.basic_api,
                                 "assoc_batch": lambda: crm.associations.v4.batch_api}[which]()
        return self._apis[which]

    # -- invoice sink --------------------------------------------------------------------------------

    def validate_invoice(self, invoice: Mapping[str, Any]) -> list[Problem]:
        return mapping.problems(invoice)

    def upsert_customer(self, customer: Mapping[str, Any]) -> ExternalRef:
        """The company whose ``meterbill_customer_id`` is the customer's id, created or updated."""
        found = self._upsert("companies", mapping.COMPANY_KEY, [mapping.company_properties(customer)], "company")
        return ExternalRef(found[0].id, str(customer["id"]))

    def find_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef) -> ExternalRef | None:
        found = self._invoice_by_key(invoice["id"])
        return self._ref(found) if found is not None else None

    def _invoice_by_key(self, meterbill_id: str) -> Any:
        """The HubSpot invoice whose unique ``meterbill_invoice_id`` is ``meterbill_id`` (None: none)."""
        try:
            found = self._api("objects").get_by_id("invoices", meterbill_id, id_property=mapping.INVOICE_KEY,
                                                   properties=INVOICE_PROPS, _request_timeout=TIMEOUT)
        except Exception as exc:
            if errors.is_api_error(exc) and getattr(exc, "status") == 404:
                return None
            raise
        return found if _props(found).get(mapping.INVOICE_KEY) == meterbill_id else None

    def push_invoice(self, invoice: Mapping[str, Any], customer_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        problems = self.validate_invoice(invoice)
        if problems:
            raise PermanentFailure("invalid_invoice", "; ".join(map(str, problems)))
        found = self._invoice_by_key(invoice["id"])
        if found is not None and _props(found).get("hs_invoice_status") in ("open", "paid", "voided"):
            return self._ref(found)                                 # pushed before: nothing to write
        email = str(invoice["customer"]["email"])
        contact = self._upsert("contacts", "email", [{"email": email, "company": str(invoice["customer"]["name"])}],
                               "contact")[0]
        draft = self._upsert("invoices", mapping.INVOICE_KEY, [mapping.invoice_properties(invoice)], "invoice")[0]
        rows = [mapping.line_properties(invoice, item) for item in mapping.items(invoice)]
        lines = [obj for chunk in _chunks(rows) for obj in self._upsert("line_items", mapping.LINE_KEY, chunk,
                                                                           "line items")]
        self._associate("contacts", contact.id, "companies", [customer_ref.id])
        self._associate("invoices", draft.id, "companies", [customer_ref.id])
        self._associate("invoices", draft.id, "contacts", [contact.id])
        self._associate("invoices", draft.id, "line_items", [ln.id for ln in lines])
        return self._ref(self._update(draft.id, {"hs_invoice_status": "open"}))

    def void_invoice(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        current = self._own_invoice(invoice["id"], invoice_ref.id)
        if _props(current).get("hs_invoice_status") == "voided":
            return self._ref(current)
        return self._ref(self._update(invoice_ref.id, {"hs_invoice_status": "voided", mapping.STATUS: "void"}))

    def push_credit_note(self, note: Mapping[str, Any], invoice_ref: ExternalRef, idempotency_key: str) -> ExternalRef:
        """A note on the company (HubSpot has no credit note object) naming the credit note, found
        first by its marker; the invoice's ``meterbill_amount_due`` is not touched (meterbill's
        payment updates carry the balance)."""
        self._own_invoice(note["invoice_id"], invoice_ref.id)
        company = self._company(str(note["customer_id"]))
        body = (f"Credit note {note['number']} for invoice {note.get('invoice_number')}: {note['total']} "
                f"{note['currency']} ({note.get('reason')}{': ' + note['memo'] if note.get('memo') else ''})")
        return self._activity("notes", NOTE_TO_COMPANY, company, idempotency_key, {"hs_note_body": body},
                              "hs_note_body", str(note.get("created_at") or ""))

    def record_payment(self, invoice: Mapping[str, Any], payment: Mapping[str, Any], invoice_ref: ExternalRef,
                       idempotency_key: str) -> ExternalRef:
        """The invoice's payment status properties (HubSpot's own ``hs_balance_due`` is read-only):
        ``paid`` once meterbill's invoice is fully paid, else ``partially_paid``."""
        self._own_invoice(invoice["id"], invoice_ref.id)
        amount = Decimal(str(payment.get("amount", "0")))
        paid = invoice.get("status") == "paid" or amount >= Decimal(str(invoice.get("amount_due", invoice["total"])))
        return self._ref(self._update(invoice_ref.id, {
            mapping.STATUS: "paid" if paid else "partially_paid",
            "meterbill_last_payment_amount": format(amount, "f"),
            "meterbill_last_payment_date": str(payment.get("date") or "")[:10]}))

    def notify(self, invoice: Mapping[str, Any], invoice_ref: ExternalRef, notice: Mapping[str, Any],
               idempotency_key: str) -> ExternalRef | None:
        """A task on the company (once per key): payment failed, overdue, or a dunning reminder;
        the invoice's payment status property follows a failed payment or an overdue."""
        kind = notice.get("kind")
        if kind not in ("payment_failed", "overdue", "reminder"):
            raise PermanentFailure("invalid_notice", f"notice kind {kind!r} is not payment_failed, overdue or reminder")
        self._own_invoice(invoice["id"], invoice_ref.id)
        if kind in ("payment_failed", "overdue"):
            self._update(invoice_ref.id, {mapping.STATUS: kind})
        company = self._company(str(invoice["customer_id"]))
        marker = f"[meterbill:{idempotency_key}]"
        subject, body, priority = mapping.task(invoice, notice, marker)
        props = {"hs_task_subject": subject, "hs_task_body": body, "hs_task_status": "NOT_STARTED",
                 "hs_task_priority": priority, "hs_task_type": "TODO"}
        if self._settings.get("task_owner_id"):
            props["hubspot_owner_id"] = str(self._settings.get("task_owner_id"))
        when = str(notice.get("at") or invoice.get("due_at") or "")
        return self._activity("tasks", TASK_TO_COMPANY, company, idempotency_key, props, "hs_task_body", when)

    def classify(self, exc: BaseException) -> Classification:
        return redacted(errors.classify(exc), self._settings)

    # -- helpers ---------------------------------------------------------------------------------------

    def _upsert(self, object_type: str, id_property: str, rows: Sequence[Mapping[str, str]], what: str) -> list[Any]:
        """Create or update ``rows`` keyed by their unique ``id_property`` (``batch/upsert``)."""
        body = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            SimplePublicObjectBatchInputUpsert(id_property=id_property, id=str(row[id_property]),
                                               properties=dict(row)) for row in rows])
        try:
            done = self._api("batch").upsert(object_type, body, _request_timeout=TIMEOUT)
        except Exception as exc:
            raise CreateFailed(self.name, what, exc) from exc
        return list(done.results or [])

    def _update(self, object_id: str, properties: Mapping[str, str]) -> Any:
        return self._api("objects").update("invoices", object_id, SimplePublicObjectInput(properties=dict(properties)),
                                           _request_timeout=TIMEOUT)

    def _associate(self, from_type: str, from_id: str, to_type: str, to_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(to_ids)):
            body = BatchInputPublicDefaultAssociationMultiPost(inputs=[
                PublicDefaultAssociationMultiPost(_from=AssociatedObject(id=from_id), to=AssociatedObject(id=to))
                for to in chunk])
            self._api("assoc_batch").create_default(from_type, to_type, body, _request_timeout=TIMEOUT)

    def _company(self, customer_id: str) -> str:
        """The company's HubSpot id, read by its unique ``meterbill_customer_id``."""
        found = self._api("objects").get_by_id("companies", customer_id, id_property=mapping.COMPANY_KEY,
                                               properties=[mapping.COMPANY_KEY], _request_timeout=TIMEOUT)
        return str(found.id)

    def _associated(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        """Ids associated with an object, every page (a page token seen twice ends the walk)."""
        ids: list[str] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self._api("assoc").get_page(from_type, from_id, to_type, limit=500, after=after,
                                               _request_timeout=TIMEOUT)
            ids += [str(r.to_object_id) for r in page.results or []]
            nxt = page.paging.next.after if page.paging and page.paging.next else None
            if not nxt or nxt in seen:
                break
            seen.add(nxt)
            after = nxt
        return ids

    def _activity(self, object_type: str, type_id: int, company_id: str, key: str, properties: Mapping[str, str],
                  body_property: str, when: str) -> ExternalRef:
        """A task or note on the company, made once per ``key``: the company's existing ones are
        read (associations, then a batch read: no search) and matched on the marker first."""
        marker = f"[meterbill:{key}]"
        existing = self._associated("companies", company_id, object_type)
        for chunk in _chunks(existing):
            read = self._api("batch").read(object_type, BatchReadInputSimplePublicObjectId(
                properties=[body_property], properties_with_history=[],
                inputs=[SimplePublicObjectId(id=i) for i in chunk]),
                _request_timeout=TIMEOUT)
            for obj in read.results or []:
                if marker in str(_props(obj).get(body_property) or ""):
                    return ExternalRef(str(obj.id))
        props = dict(properties)
        if marker not in props[body_property]:
            props[body_property] = f"{props[body_property]}\n\n{marker}"
        props["hs_timestamp"] = when or "1970-01-01T00:00:00Z"
        create = SimplePublicObjectInputForCreate(properties=props, associations=[PublicAssociationsForObject(
            to=PublicObjectId(id=company_id), types=[AssociationSpec(association_category="HUBSPOT_DEFINED",
                                                                      association_type_id=type_id)])])
        try:
            made = self._api("objects").create(object_type, create, _request_timeout=TIMEOUT)
        except Exception as exc:
            raise CreateFailed(self.name, object_type[:-1], exc) from exc
        return ExternalRef(str(made.id))

    def _own_invoice(self, meterbill_id: str, hubspot_id: str) -> Any:
        """The HubSpot invoice, checked to be meterbill's (never trust an id alone)."""
        found = self._api("objects").get_by_id("invoices", hubspot_id, properties=INVOICE_PROPS,
                                               _request_timeout=TIMEOUT)
        if _props(found).get(mapping.INVOICE_KEY) != meterbill_id:
            raise PermanentFailure("wrong_invoice", f"HubSpot invoice {hubspot_id} is not meterbill's {meterbill_id}")
        return found

    @staticmethod
    def _ref(obj: Any) -> ExternalRef:
        return ExternalRef(str(obj.id), _props(obj).get("hs_number"))
