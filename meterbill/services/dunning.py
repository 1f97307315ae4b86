"""Overdue and dunning, computed by meterbill (Stripe emits ``invoice.overdue`` only from its own
automations): one tick (``functions/dunning.py`` on a schedule, ``meterbill dunning run``, the
local stack's timer) pages through the open invoices past their due date (the sparse ``gsi3``
OPEN list, never a scan of all invoices) and for each:

- marks it ``overdue`` (``overdue_at``; an ``overdue`` outbox record → every integration);
- records the highest ladder step reached (``METERBILL_DUNNING_LADDER``, days after due) on the
  invoice by a conditional write — a step at or below one already recorded is refused, so two
  racing ticks or a retried Lambda send each step once — with a ``reminder`` outbox record, which
  the dispatcher delivers through each integration's optional ``Notifier`` (HubSpot: a task on the
  company; Stripe: its own reminder e-mail where Stripe collects with ``send_invoice``);
- after the last step flags it ``collections`` (``collections_at``; listed by
  ``GET /v1/invoices?collections=true``).

A paid, void or uncollectible invoice is off the OPEN list (its transition removed it), so its
ladder stops. Cost per tick: one query page per 100 past-due open invoices (the index projects the
whole invoice: no further read) and one transaction per invoice that moves; invoices not yet due
and those already in collections are never read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from meterbill.domain.dunning import is_overdue, step_due
from meterbill.domain.instants import iso, parse_instant
from meterbill.ports import Clock
from meterbill.services.errors import Conflict, InvalidField

log = logging.getLogger(__name__)
PAGE = 100


class DunningService:
    def __init__(self, store: Any, clock: Clock, ladder: Sequence[int] = (1, 7, 14)) -> None:
        self._store = store
        self._clock = clock
        self.ladder = tuple(ladder)

    def run(self, as_of: datetime | None = None) -> dict[str, Any]:
        """One tick at ``as_of`` (default now; never in the future: a reminder is not sent early)."""
        now = self._clock()
        as_of = as_of or now
        if as_of > now:
            raise InvalidField("as_of", f"must not be in the future (now is {iso(now)})")
        summary: dict[str, Any] = {"as_of": iso(as_of), "examined": 0, "overdue": [], "reminders": [],
                                   "collections": [], "already_done": 0}
        cursor: str | None = None
        while True:
            page, cursor = self._store.past_due(iso(as_of), PAGE, cursor)
            for invoice in page:
                summary["examined"] += 1
                self._one(invoice, as_of, summary)
            if not cursor:
                break
        log.info("dunning tick at %s: %d examined, %d overdue, %d reminders, %d to collections", summary["as_of"],
                 summary["examined"], len(summary["overdue"]), len(summary["reminders"]), len(summary["collections"]))
        return summary

    def _one(self, invoice: dict[str, Any], as_of: datetime, summary: dict[str, Any]) -> None:
        inv_id = invoice["id"]
        if invoice.get("status") != "final":
            self._store.leave_dunning(inv_id)
            return
        due = parse_instant(invoice["due_at"], "due_at")
        if not is_overdue(due, as_of):
            return
        step = step_due(due, as_of, self.ladder)
        recorded = int(invoice.get("dunning_step", -1))
        new_overdue = "overdue_at" not in invoice
        new_step = step if step > recorded else None
        if not new_overdue and new_step is None:
            return
        at = iso(self._clock())
        last = new_step is not None and new_step == len(self.ladder) - 1
        step_doc = None if new_step is None else {
            "step": new_step + 1, "days_after_due": self.ladder[new_step], "at": at, "as_of": iso(as_of)}
        try:
            self._store.record_dunning(inv_id, new_step, at if new_overdue else None,
                                       at if last else None, at, step_doc)
        except Conflict:
            summary["already_done"] += 1   # another tick (or a payment) got there first
            return
        if new_overdue:
            summary["overdue"].append(inv_id)
        if new_step is not None:
            summary["reminders"].append({"invoice": inv_id, "step": new_step + 1})
        if last:
            summary["collections"].append(inv_id)
