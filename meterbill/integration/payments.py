"""Forward-only payment status (pure): paid stays paid whatever arrives after, in whatever order.

Webhooks are delivered at least once and in no particular order (a ``payment_failed`` of an
earlier attempt can arrive after ``paid``), so a status moves only to a higher rank:

    open (0) < payment_failed, action_required (1) < uncollectible (2) < paid, void (3)

``paid`` and ``void`` are terminal. ``uncollectible`` is not: as in Stripe and in meterbill's own
``invoices.TRANSITIONS``, bad debt can still be paid or voided. Two statuses of the same rank do not
replace each other (``payment_failed`` and ``action_required`` are both "an attempt did not
settle"; which came last cannot be told from delivery order).
"""

from __future__ import annotations

from types import MappingProxyType

RANK = MappingProxyType({"open": 0, "payment_failed": 1, "action_required": 1, "uncollectible": 2,
                         "paid": 3, "void": 3})
STATUSES = frozenset(RANK)
TERMINAL = frozenset({"paid", "void"})


def advance(current: str | None, incoming: str) -> str:
    """The status after ``incoming`` arrives at an invoice whose status is ``current`` (None:
    nothing known yet). Unknown statuses are a programming error (ValueError)."""
    if incoming not in RANK:
        raise ValueError(f"unknown payment status {incoming!r}; expected one of {sorted(RANK)}")
    if current is None:
        return incoming
    if current not in RANK:
        raise ValueError(f"unknown payment status {current!r}; expected one of {sorted(RANK)}")
    return incoming if RANK[incoming] > RANK[current] else current


def moves(current: str | None, incoming: str) -> bool:
    """True when ``incoming`` changes the status (the event is worth writing)."""
    return advance(current, incoming) != current
