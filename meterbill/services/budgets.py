"""Spend budgets, the running bill behind them, threshold alerts and the spend check.

The running bill (``CUS#<id>`` / ``RUNNING``) is the open period's upcoming-invoice total, refreshed
by the aggregator after each stream batch for the customers of that batch that have a budget (one
BatchGetItem per batch finds them), by the rating code of the real close: never added to by hand,
so a redelivered batch or two racing refreshes cannot count anything twice (the later computation
wins, ``computed_ms``). The spend check reads it with the budget in one BatchGetItem; it is as
current as aggregation (the aggregator's batching window, ~20 s at low traffic, plus its lag,
``GET /v1/health``). Threshold alerts fire from the same refresh: one per customer × period ×
threshold, claimed by a conditional put before the alert sink is called.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from meterbill.domain.budgets import Budget, SpendCheck, budget_from_doc, parse_budget
from meterbill.domain.instants import iso, parse_instant
from meterbill.domain.money import MONEY, format_amount, parse_amount
from meterbill.ports import AlertSink, BillingStore, BudgetStore, Clock
from meterbill.services.billing import BillingService
from meterbill.services.errors import NotFound

log = logging.getLogger(__name__)
ALERT_EVENT = "budget.threshold_crossed"
RESEND_AFTER_S = 60   # an alert claimed but not marked sent (a crash in between) is sent again after this


def _ms(clock: Clock) -> int:
    return int(clock().timestamp() * 1000)


class BudgetService:
    def __init__(self, store: BillingStore, budgets: BudgetStore, billing: BillingService, clock: Clock,
                 sink: AlertSink) -> None:
        self._store = store
        self._budgets = budgets
        self._billing = billing
        self._clock = clock
        self._sink = sink

    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer = self._store.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"customer '{customer_id}' does not exist", field="id")
        return customer

    # -- setting a budget ---------------------------------------------------------------------------
    def put(self, customer_id: str, raw: Mapping[str, Any], set_by: str) -> dict[str, Any]:
        """Set (replace) the customer's budget per period; the running bill is computed at once."""
        customer = self._customer(customer_id)
        budget = parse_budget(raw, customer["currency"])
        self._budgets.put_budget(customer_id, {**budget.as_doc(), "set_by": set_by, "updated_at": iso(self._clock())})
        self._refresh_one(customer_id, budget)
        return self.view(customer_id)

    def view(self, customer_id: str) -> dict[str, Any]:
        """The budget, the running bill and the alerts sent this period (404: no budget set)."""
        budget, running = self._budgets.get_budget_and_running(customer_id)
        if budget is None:
            raise NotFound(f"customer '{customer_id}' has no budget", field="id")
        period = (running or {}).get("period") or {}
        alerts = self._budgets.alerts(customer_id, period["start"]) if period else []
        return {"customer_id": customer_id, **budget, "running": running,
                "alerts": [{"threshold": int(a["threshold"]), "crossed_at": a["crossed_at"], "status": a["status"]}
                           for a in alerts]}

    # -- the running bill ---------------------------------------------------------------------------
    def refresh(self, customer_ids: Iterable[str]) -> int:
        """After usage of ``customer_ids`` was aggregated: re-rate the running bill of those with a
        budget and send the alerts it crosses. Never raises (aggregation must go on); a customer
        that fails is logged and refreshed by its next batch or spend check. Returns how many were
        refreshed."""
        try:
            budgeted = self._budgets.budgeted(customer_ids)
        except Exception:
            log.exception("budgets of %d customers not read; running bills not refreshed", len(set(customer_ids)))
            return 0
        done = 0
        for customer_id, doc in sorted(budgeted.items()):
            try:
                self._refresh_one(customer_id, budget_from_doc(doc))
                done += 1
            except Exception:
                log.exception("running bill of customer %s not refreshed", customer_id)
        return done

    def _refresh_one(self, customer_id: str, budget: Budget | None) -> dict[str, Any]:
        started_ms = _ms(self._clock)
        bill = self._billing.upcoming(customer_id)
        running = {"period": bill["period"], "spent": bill["total"], "currency": bill["currency"],
                   "computed_ms": started_ms, "as_of": bill["as_of"]}
        self._budgets.put_running(customer_id, running)
        if budget is not None:
            self._alert(customer_id, budget, running)
        return running

    def _alert(self, customer_id: str, budget: Budget, running: Mapping[str, Any]) -> None:
        crossed = budget.crossed(Decimal(running["spent"]))
        if not crossed:
            return
        period = running["period"]
        known = {int(a["threshold"]): a for a in self._budgets.alerts(customer_id, period["start"])}
        now = self._clock()
        for threshold in crossed:
            prior = known.get(threshold)
            if prior is not None and (prior.get("status") == "sent" or
                                      (now - parse_instant(prior["crossed_at"], "crossed_at")).total_seconds()
                                      < RESEND_AFTER_S):
                continue  # sent, or being sent by the refresh that claimed it
            payload = {"customer_id": customer_id, "period": dict(period), "threshold": threshold,
                       "budget": format_amount(budget.amount, budget.currency), "currency": budget.currency,
                       "spent": running["spent"], "crossed_at": iso(now)}
            if prior is None and not self._budgets.claim_alert(customer_id, period["start"], threshold, {
                    **payload, "status": "sending"}):
                continue  # another refresh claimed it just now
            self._sink.emit(ALERT_EVENT, payload, f"budget:{customer_id}:{period['start']}:{threshold}")
            self._budgets.settle_alert(customer_id, period["start"], threshold, {"status": "sent", "sent_at": iso(now)})

    # -- the spend check ----------------------------------------------------------------------------
    def spend_check(self, customer_id: str, amount: str | None) -> dict[str, Any]:
        """Would ``amount`` more spend stay within the budget? From the stored running bill (one
        read); recomputed here only when there is none yet or its period has ended."""
        budget_doc, running = self._budgets.get_budget_and_running(customer_id)
        now = self._clock()
        if running is None or parse_instant(running["period"]["end"], "period.end") <= now:
            self._customer(customer_id)  # 404 for an unknown customer, before any rating
            running = self._refresh_one(customer_id, budget_from_doc(budget_doc) if budget_doc else None)
        currency = str(running["currency"])
        extra = parse_amount("0" if amount is None else amount, "amount", MONEY, currency)
        budget = budget_from_doc(budget_doc) if budget_doc else None
        check = SpendCheck(Decimal(str(running["spent"])), extra, budget)
        return {"customer_id": customer_id, "currency": currency, "period": running["period"],
                "spent": format_amount(check.spent, currency), "amount": format_amount(extra, currency),
                "projected": format_amount(check.projected, currency),
                "budget": format_amount(budget.amount, currency) if budget else None,
                "remaining": format_amount(check.remaining, currency) if check.remaining is not None else None,
                "within_budget": check.within_budget, "as_of": running["as_of"],
                "age_s": round(max(0, int(now.timestamp() * 1000) - int(running["computed_ms"])) / 1000, 3)}
