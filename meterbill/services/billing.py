"""Billing runs: close every period that ended at or before ``as_of`` and invoice it.

Scheduled (EventBridge Scheduler) and on-demand (POST /v1/billing-runs) take this one path.
Each invoice is committed in one transaction with its gapless number and the customer's
closed-through mark, so a crash leaves nothing half-done and a re-run creates nothing twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from meterbill.domain.adjustments import Discount, apply_discounts, discount_from_doc, draw_credits, grant_from_doc
from meterbill.domain.charges import DETAILED, PricingContext, Usage
from meterbill.domain.contracts import entry, in_effect_before, split
from meterbill.domain.errors import DomainError
from meterbill.domain.instants import iso, parse_instant
from meterbill.domain.invoices import TRANSITIONS, build_invoice, invoice_id, invoice_number
from meterbill.domain.meters import bucket_range, usage_of
from meterbill.domain.money import format_amount
from meterbill.domain.periods import Period, closed_periods, full_period, period_containing
from meterbill.domain.plans import Plan
from meterbill.domain.rating import Line, Rated, Segment, rate_segments
from meterbill.domain.taxes import TaxParty, tax_lines, total_with
from meterbill.ports import BillingStore, Clock, ItemChange, UsageLag, UsageWatermark
from meterbill.services.credit_notes import CreditNoteService
from meterbill.services.late_usage import LateUsage, Rerated
from meterbill.services.catalog import CatalogService
from meterbill.services.errors import Conflict, InvalidField, NotFound

log = logging.getLogger(__name__)
MAX_COMMIT_RETRIES = 10
# One numbering transaction: the counter + per invoice its update and its queue entry's delete
# (TransactWriteItems takes at most 100 items).
NUMBER_BATCH = 49
MAX_NUMBERING_CONFLICTS = 100
ZERO = Decimal(0)


@dataclass(slots=True)
class RunSummary:
    as_of: str
    customers: int = 0
    invoices: list[str] = field(default_factory=list)   # finalized by this run
    drafts: list[str] = field(default_factory=list)     # created or refreshed, still in grace
    errors: list[dict[str, str]] = field(default_factory=list)
    # Aggregation had not applied every event accepted before the run started: no invoice was
    # finalized; ``waiting`` lists the drafts a later run finalizes.
    usage_lag: UsageLag | None = None
    waiting: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of, "customers_examined": self.customers,
                "invoices_created": self.invoices, "drafts": self.drafts, "errors": self.errors,
                "waiting_for_usage": self.waiting,
                "usage_lag": None if self.usage_lag is None else self.usage_lag.as_dict()}


class BillingService:
    def __init__(self, store: BillingStore, catalog: CatalogService, clock: Clock, credit_notes: CreditNoteService,
                 invoice_prefix: str = "INV-", grace_hours: float = 0, seller_country: str | None = None,
                 watermark: UsageWatermark | None = None, collection_method: str = "send_invoice") -> None:
        self._watermark = watermark
        self.collection_method = collection_method   # a customer without its own terms gets this
        self._late = LateUsage(store, catalog, clock, credit_notes, self.rate_period)
        self._seller_country = seller_country
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._prefix = invoice_prefix
        self._grace_hours = grace_hours

    def run(self, as_of: datetime | None = None) -> RunSummary:
        now = self._clock()
        as_of = as_of or now
        if as_of > now:
            raise InvalidField("as_of", "must not be in the future: only periods that have ended can close")
        summary = RunSummary(as_of=iso(as_of))
        # Every event accepted before this moment must be on the invoices this run finalizes:
        # wait (bounded) for aggregation to apply them; if it cannot, finalize nothing.
        summary.usage_lag = self._watermark.wait() if self._watermark is not None else None
        cursor = None
        while True:
            due, cursor = self._store.due_customers(iso(as_of), 100, cursor)
            for customer in due:
                summary.customers += 1
                try:
                    self.close_customer(customer["id"], as_of, summary)
                except Exception as exc:  # noqa: BLE001 - one customer never stops the run for the others
                    log.exception("closing customer %s failed", customer["id"])
                    summary.errors.append({"customer": customer["id"], "error": describe(exc)})
            if not cursor:
                break
        self.bill_thresholds(as_of, summary)
        try:
            self.number_invoices()
        except Exception as exc:  # noqa: BLE001 - committed invoices stay queued; any later pass numbers them
            log.exception("numbering invoices failed")
            summary.errors.append({"customer": "", "error": f"numbering (retried by the next pass): {_describe(exc)}"})
        return summary

    def close_customer(self, customer_id: str, as_of: datetime, summary: RunSummary) -> None:
        """Invoice every ended period in order. A period still inside its grace period gets a
        draft (re-rated on every run, so late events land on it) and stops the walk: periods
        finalize strictly in order."""
        conflicts = 0  # retries of the current period; the number of periods has no bound of its own
        while conflicts < MAX_COMMIT_RETRIES:
            customer = self._store.get_customer(customer_id)
            if customer is None:
                return
            plan = self._catalog.plan(customer["plan"])
            period = self._next_period(customer, plan, as_of)
            if period is None:
                return
            grace = timedelta(hours=float(customer.get("invoice_grace_hours", self._grace_hours)))
            if as_of < period.end + grace:
                summary.drafts.append(self._save_draft(customer, plan, period))
                return
            if summary.usage_lag is not None:
                draft = self._save_draft(customer, plan, period, waiting=summary.usage_lag)
                summary.drafts.append(draft)
                summary.waiting.append(draft)
                return
            # The fence: from here on the aggregator marks usage for this period late (its bucket
            # write precedes its fence read; this fence write precedes our bucket read), so an
            # event aggregated after the read below is either on this invoice or re-rated later.
            self._store.fence_close(customer_id, iso(period.end))
            if self._commit_one(customer, plan, period):
                summary.invoices.append(invoice_id(customer_id, period))
                conflicts = 0
            else:
                conflicts += 1
        raise Conflict(f"customer {customer_id}: gave up after repeated concurrent changes")

    def number_invoices(self) -> int:
        """The sequencer: give every committed invoice waiting for one its gapless number, in
        commit order, up to NUMBER_BATCH per transaction, and make it final. Closes commit in
        parallel without touching the counter; only numbering passes contend for it, and a pass that
        loses simply re-reads (the winner numbered what it had). Returns how many it numbered."""
        numbered, conflicts = 0, 0
        while True:
            pending = self._store.invoices_to_number(NUMBER_BATCH)
            if not pending:
                return numbered
            first = self._store.invoice_counter() + 1
            batch = [(queued, inv_id, invoice_number(self._prefix, first + i))
                     for i, (queued, inv_id) in enumerate(pending)]
            try:
                self._store.number_invoices(first, batch, iso(self._clock()))
            except Conflict:
                conflicts += 1
                if conflicts >= MAX_NUMBERING_CONFLICTS:
                    raise
                continue
            numbered += len(batch)
            for _, inv_id, number in batch:
                log.info("invoice %s numbered %s", inv_id, number)

    def transition(self, invoice_id: str, action: str, reference: str | None = None,
                   at: datetime | None = None) -> dict[str, Any]:
        """mark-paid | void | mark-uncollectible. Repeating the same action is harmless."""
        if action not in TRANSITIONS:
            raise InvalidField("action", f"must be one of: {', '.join(TRANSITIONS)}")
        allowed, status = TRANSITIONS[action]
        current = self._store.get_invoice(invoice_id)
        if current is None:
            raise NotFound(f"invoice '{invoice_id}' does not exist", field="id")
        if current["status"] == status:
            return current  # a retried request
        when = iso(at or self._clock())
        changes: dict[str, Any] = {f"{status}_at": when}
        if reference:
            changes[f"{status}_reference"] = reference
        # paid and void reach the integrations (outbox); uncollectible is a collection matter
        outbox = when if status in ("paid", "void") else None
        return self._store.set_invoice_status(invoice_id, allowed, status, changes, outbox_at=outbox)

    def simulate(self, plan_raw: dict[str, Any], customer_ids: list[str] | None, periods: int = 3) -> dict[str, Any]:
        """Re-rate customers' last ``periods`` invoiced periods under a candidate plan, with the
        same rating code as the real close, and compare pre-tax subtotals. Nothing is stored."""
        if not 1 <= periods <= 24:
            raise InvalidField("periods", "must be 1 to 24")
        candidate = self._catalog.candidate_plan(plan_raw)
        if customer_ids is None:
            customer_ids = [c["id"] for c in self._store.list_customers(100, None)[0]]
        if len(customer_ids) > 100:
            raise InvalidField("customers", "at most 100 customers per simulation")
        if len(set(customer_ids)) != len(customer_ids):
            raise InvalidField("customers", "lists a customer more than once")
        rows, old_sum, new_sum = [], Decimal(0), Decimal(0)
        for cid in customer_ids:
            customer = self._store.get_customer(cid)
            if customer is None:
                raise NotFound(f"customer '{cid}' does not exist", field="customers")
            if customer["currency"] != candidate.currency:
                raise InvalidField("plan.currency", f"customer '{cid}' is billed in {customer['currency']}")
            invoiced = [i for i in self._store.list_invoices(cid, 100, None)[0]
                        if i.get("number") and i.get("kind") != "threshold"]
            result = []
            for inv in sorted(invoiced, key=lambda i: i["period"]["start"])[-periods:]:
                period = Period(parse_instant(inv["period"]["start"], "start"),
                                parse_instant(inv["period"]["end"], "end"), 0)
                new = self._rate(customer, [(candidate, period)], period, candidate).subtotal
                old = Decimal(inv["subtotal"])
                result.append({"period": inv["period"], "invoice": inv["number"], "old_subtotal": inv["subtotal"],
                               "new_subtotal": format_amount(new, candidate.currency),
                               "difference": format_amount(new - old, candidate.currency)})
                old_sum, new_sum = old_sum + old, new_sum + new
            rows.append({"customer": cid, "periods": result})
        return {"currency": candidate.currency, "customers": rows,
                "old_subtotal": format_amount(old_sum, candidate.currency),
                "new_subtotal": format_amount(new_sum, candidate.currency),
                "difference": format_amount(new_sum - old_sum, candidate.currency)}

    def upcoming(self, customer_id: str) -> dict[str, Any]:
        """The running bill of the open period: rated by the same code as the real close, from
        the usage aggregated so far (the period's base fee in full, as it will be billed)."""
        customer = self._store.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"customer '{customer_id}' does not exist", field="id")
        plan = self._catalog.plan(customer["plan"])
        anchor = parse_instant(customer["billing_anchor"], "billing_anchor")
        started = parse_instant(customer["started_at"], "started_at")
        period = period_containing(anchor, plan.interval, customer["timezone"], max(self._clock(), started))
        if period.start < started:
            period = Period(started, period.end, period.index)
        doc, _ = self._assemble(customer, plan, period, False)
        doc.update(status="upcoming", as_of=iso(self._clock()))
        return doc

    def _save_draft(self, customer: dict[str, Any], plan: Plan, period: Period, waiting: UsageLag | None = None) -> str:
        inv, _ = self._assemble(customer, plan, period, False)
        if waiting is not None:
            inv["waiting_for_usage"] = {**waiting.as_dict(),
                                        "message": "aggregation had not applied every event accepted before the "
                                                   "billing run; a later run finalizes this invoice"}
        self._store.save_draft(inv, customer["id"])
        return str(inv["id"])

    def _assemble(self, customer: dict[str, Any], plan: Plan, period: Period, final: bool,
                  rerated: list[Rerated] | None = None) -> tuple[dict[str, Any], list[ItemChange]]:
        """The invoice for ``period`` (a draft, or ``final``: committed as ``finalizing``, numbered
        by the sequencer) and what committing it changes: late usage settled, discounts used,
        prepaid credits drawn."""
        rated = self.rate_period(customer, plan, period)
        late_lines, changes = self._late.adjustments(customer, period, rerated)
        lines = [*rated.lines, *late_lines, *self._already_invoiced(customer, period, plan.currency)]
        doc, more = self._finish(customer, plan, period, final, lines, rated.plan, invoice_id(customer["id"], period))
        # what a late re-rating compares with and re-rates under: charges only, and the plan versions
        doc["rated_subtotal"] = format_amount(rated.subtotal, plan.currency)
        doc["plan_versions"] = {p.code: p.version for p in rated.plans if p.version is not None}
        doc["kind"] = "period"
        return doc, changes + more

    def _finish(self, customer: dict[str, Any], plan: Plan, period: Period, final: bool, lines: list[Line],
                end_plan: Plan | None, inv_id: str) -> tuple[dict[str, Any], list[ItemChange]]:
        """Lines -> discounts -> taxes -> credits drawn -> the invoice document, and the
        discount and credit changes its commit makes."""
        cid, currency = customer["id"], plan.currency
        subtotal = sum((ln.amount for ln in lines), ZERO)
        discounts = apply_discounts([(ln.meter, ln.amount) for ln in lines], self._discounts(cid), currency,
                                    plan.rounding, period.key)  # threshold invoices share their period's key
        taxable = subtotal - sum((d.amount for d in discounts), ZERO)
        address = customer.get("address") or {}
        party = TaxParty(address.get("country"), address.get("state"), bool(customer.get("tax_exempt")),
                         customer.get("tax_id"))
        taxes = tax_lines(taxable, currency, self._catalog.tax_rates(), party, self._seller_country,
                          plan.tax_inclusive, plan.rounding)
        grants = [grant_from_doc(g) for g in self._store.customer_items("grant", cid)]
        drawn = draw_credits(total_with(taxable, taxes, plan.tax_inclusive), grants, period.end)
        version = plan.version if plan.version is not None else int(self._catalog.get_plan_doc(plan.code)["version"])
        doc = build_invoice(invoice_id=inv_id, status="finalizing" if final else "draft",
                            customer=customer, plan_code=plan.code, plan_version=version,
                            period=period, rated=Rated(currency, tuple(lines), subtotal, subtotal, end_plan),
                            created_at=iso(self._clock()), taxes=taxes, tax_inclusive=plan.tax_inclusive,
                            discounts=discounts, credits=drawn, collection_method=self.collection_method)
        changes = [ItemChange("discount", cid, d.discount.id, d.after(currency, period.key),
                               {"applied": d.discount.applied})
                   for d in discounts]
        changes += [ItemChange("grant", cid, g.id, {"remaining": format_amount(g.remaining - a, currency)},
                               {"remaining": format_amount(g.remaining, currency)}) for g, a in drawn]
        return doc, changes

    # -- progressive (threshold) billing ----------------------------------------------------
    @staticmethod
    def _progress(customer: dict[str, Any], period: Period) -> dict[str, Any]:
        """What threshold invoices have billed of ``period`` so far."""
        state = customer.get("progressive") or {}
        if state.get("period") != period.key:
            return {"period": period.key, "billed": "0", "invoices": []}
        return state

    def _already_invoiced(self, customer: dict[str, Any], period: Period, currency: str) -> list[Line]:
        state = self._progress(customer, period)
        billed = Decimal(state["billed"])
        if not billed:
            return []
        return [Line("progressive", "Already invoiced during this period (progressive billing): "
                                    + ", ".join(map(self._number_of, state["invoices"])), -billed, -billed)]

    def _number_of(self, invoice_ref: str) -> str:
        """A threshold invoice's number (progress lists their ids; before numbering moved to the
        sequencer it listed their numbers), or its id while it waits for one."""
        found = self._store.get_invoice(invoice_ref)
        return str(found.get("number") or invoice_ref) if found else invoice_ref

    def bill_thresholds(self, as_of: datetime, summary: RunSummary) -> None:
        """Customers with a ``progressive_threshold``: when the usage billed so far in the open
        period has grown by at least the threshold since the last invoice, invoice it now."""
        cursor = None
        while True:
            found, cursor = self._store.progressive_customers(100, cursor)
            for cid in found:
                try:
                    self._bill_threshold(cid, as_of, summary)
                except Exception as exc:  # noqa: BLE001 - one customer never stops the run for the others
                    log.exception("threshold billing for customer %s failed", cid)
                    summary.errors.append({"customer": cid, "error": describe(exc)})
            if not cursor:
                return

    def bill_threshold(self, customer_id: str, as_of: datetime, summary: RunSummary) -> None:
        """One progressive customer's threshold invoice, if its open period's usage has grown by
        the threshold (the fanned-out run's unit of work, after ``close_customer``)."""
        self._bill_threshold(customer_id, as_of, summary)

    def _bill_threshold(self, customer_id: str, as_of: datetime, summary: RunSummary) -> None:
        for _ in range(MAX_COMMIT_RETRIES):
            customer = self._store.get_customer(customer_id)
            if customer is None or not customer.get("progressive_threshold"):
                return
            plan = self._catalog.plan(customer["plan"])
            started = parse_instant(customer["started_at"], "started_at")
            if as_of <= started or self._next_period(customer, plan, as_of) is not None:
                return  # not started, or ended periods must close first
            period = period_containing(parse_instant(customer["billing_anchor"], "billing_anchor"), plan.interval,
                                       customer["timezone"], as_of)
            if period.start < started:
                period = Period(started, period.end, period.index)
            rated = self.rate_period(customer, plan, period)
            usage = [ln for ln in rated.lines if ln.kind == "usage"]
            used = sum((ln.amount for ln in usage), ZERO)
            state = self._progress(customer, period)
            if used - Decimal(state["billed"]) < Decimal(customer["progressive_threshold"]):
                return
            so_far = Period(period.start, as_of, period.index)
            inv_id = f"{invoice_id(customer_id, period)}_t{len(state['invoices']) + 1}"
            inv, changes = self._finish(customer, plan, so_far, True,
                                        [*usage, *self._already_invoiced(customer, period, plan.currency)],
                                        rated.plan, inv_id)
            inv.update(kind="threshold", billing_period={"start": iso(period.start), "end": iso(period.end)})
            progress = {"period": period.key, "billed": format_amount(used, plan.currency),
                        "invoices": [*state["invoices"], inv_id]}
            try:
                self._store.commit_invoice(inv, customer_id, int(customer["version"]), {"progressive": progress},
                                           changes)
            except Conflict:
                continue
            summary.invoices.append(inv_id)
            return
        raise Conflict(f"customer {customer_id}: gave up after repeated concurrent changes")

    def _discounts(self, customer_id: str) -> list[Discount]:
        docs = sorted(self._store.customer_items("discount", customer_id), key=lambda d: (d["created_at"], d["id"]))
        return [discount_from_doc(d) for d in docs if not d.get("ended_at")]

    def _next_period(self, customer: dict[str, Any], plan: Plan, as_of: datetime) -> Period | None:
        after = parse_instant(customer["closed_through"], "closed_through") if customer["closed_through"] else None
        periods = closed_periods(parse_instant(customer["billing_anchor"], "billing_anchor"), plan.interval,
                                 customer["timezone"], parse_instant(customer["started_at"], "started_at"),
                                 after, as_of)
        return periods[0] if periods else None

    def rerate(self, customer: dict[str, Any], invoice: dict[str, Any]) -> Rated | None:
        """``invoice``'s period re-rated now, as late usage re-rates it (reconciliation)."""
        return self._late.rerate(customer, invoice)

    def rate_period(self, customer: dict[str, Any], plan: Plan, period: Period,
                    versions: Mapping[str, int] | None = None) -> Rated:
        """Rate ``period`` split at every change in the customer's plan history: each part under its
        plan (with the customer's price overrides) from its own usage. ``plan``, the customer's
        current plan, stands for the history of customers saved before plan histories existed."""
        history = customer.get("plan_history") or [entry(plan.code, parse_instant(customer["started_at"], "started_at"),
                                                         customer.get("price_overrides") or {})]
        try:
            parts = [(self._terms(e, versions), span) for e, span in split(history, period)]
            before = in_effect_before(history, period.start)
            prepaid = self._terms(before, versions) if before is not None else None
        except InvalidField as exc:  # a plan version changed under the customer's overrides
            raise Conflict(f"customer {customer['id']}: its price_overrides no longer fit the current plan "
                           f"({exc.field}: {exc.problem}); update the customer's price_overrides",
                           field=exc.field) from exc
        return self._rate(customer, parts, period, prepaid)

    def _terms(self, history_entry: Mapping[str, Any], versions: Mapping[str, int] | None = None) -> Plan:
        """The terms of one plan-history entry: current plan versions, or those of ``versions``
        (plan code -> version an invoice was rated with)."""
        code = history_entry["plan"]
        version = None if versions is None else versions.get(code)
        return self._catalog.effective_plan(code, history_entry.get("price_overrides"), version)

    def _rate(self, customer: dict[str, Any], parts: list[tuple[Plan, Period]], period: Period,
              prepaid: Plan | None) -> Rated:
        meters = self._catalog.meters()
        started = parse_instant(customer["started_at"], "started_at")
        segments = []
        for plan, span in parts:
            buckets: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)
            for bucket in self._store.query_buckets(customer["id"], *bucket_range(span.start, span.end, started)):
                buckets[bucket.meter].append((bucket.start_s, bucket.group, bucket.state))
            usages: dict[str, Usage] = {}
            for charge in plan.charges:
                meter = meters.get(charge.meter)
                if meter is None:
                    raise NotFound(f"plan {plan.code} charges meter '{charge.meter}', which does not exist")
                usages[charge.meter] = usage_of(meter, buckets.get(charge.meter, []), charge.model.name in DETAILED)
            segments.append(Segment(plan, span, usages))
        anchor = parse_instant(customer["billing_anchor"], "billing_anchor")
        tz, interval = customer["timezone"], parts[-1][0].interval
        first = period.start <= started
        return rate_segments(segments, full_period(anchor, interval, tz, period),
                             PricingContext(parts[-1][0].currency, tz), first=first,
                             next_full=period_containing(anchor, interval, tz, period.end),
                             prepaid=None if first or prepaid is None or prepaid.base_fee_timing != "advance"
                             else prepaid,
                             meter_units={c.meter: meters[c.meter].unit for p, _ in parts for c in p.charges})

    def _commit_one(self, customer: dict[str, Any], plan: Plan, period: Period) -> bool:
        rerated = self._late.settle_credits(customer, period)
        inv, extra = self._assemble(customer, plan, period, True, rerated)
        anchor = parse_instant(customer["billing_anchor"], "billing_anchor")
        next_end = period_containing(anchor, plan.interval, customer["timezone"], period.end).end
        changes = {"closed_through": iso(period.end), "next_close": iso(next_end),
                   "gsi2sk": f"{iso(next_end)}#{customer['id']}"}
        try:
            self._store.commit_invoice(inv, customer["id"], int(customer["version"]), changes, extra)
        except Conflict:
            return False  # customer moved (another closer, a profile edit): re-read, retry
        log.info("invoice %s committed for %s %s..%s total %s %s", inv["id"], customer["id"],
                 inv["period"]["start"], inv["period"]["end"], inv["total"], inv["currency"])
        return True


def describe(exc: Exception) -> str:
    """A run's error entry: our errors by their message; anything else also names its type
    (``str(InvalidOperation())`` alone says nothing)."""
    if isinstance(exc, (DomainError, NotFound, Conflict)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
