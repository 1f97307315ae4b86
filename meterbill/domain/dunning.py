"""Collection terms, payments and the dunning ladder (pure: no clock, no storage).

An invoice is *overdue* from the instant after its ``due_at`` while it has a balance. The ladder
is a list of whole days after the due date (default 1, 7, 14): step ``i`` (0-based) is due once
``as_of >= due_at + ladder[i] days``. A tick that runs late sends only the highest step reached
(one reminder, not a burst of stale ones); the steps it skipped are not sent later. After the last
step the invoice goes to collections.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

COLLECTION_METHODS = ("charge_automatically", "send_invoice")
MAX_LADDER_STEPS = 10
MAX_LADDER_DAYS = 365


def parse_ladder(text: str, field: str = "dunning_ladder") -> tuple[int, ...]:
    """``"1,7,14"`` → ``(1, 7, 14)``: 1 to 10 whole days, strictly increasing, each 0 to 365."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"{field} must be whole numbers of days after the due date, comma-separated "
                         f"(e.g. 1,7,14), not {text!r}")
    days = tuple(int(p) for p in parts)
    if len(days) > MAX_LADDER_STEPS or any(d > MAX_LADDER_DAYS for d in days):
        raise ValueError(f"{field} takes at most {MAX_LADDER_STEPS} steps of at most {MAX_LADDER_DAYS} days")
    if any(b <= a for a, b in zip(days, days[1:])):
        raise ValueError(f"{field} must be strictly increasing, not {text!r}")
    return days


def step_due(due_at: datetime, as_of: datetime, ladder: Sequence[int]) -> int:
    """The highest 0-based ladder step reached at ``as_of`` (-1: none yet)."""
    reached = -1
    for i, days in enumerate(ladder):
        if as_of >= due_at + timedelta(days=days):
            reached = i
    return reached


def is_overdue(due_at: datetime, as_of: datetime) -> bool:
    return as_of > due_at


def payment_id(invoice_id: str, key: str) -> str:
    """Deterministic: the same reference (or Idempotency-Key) on the same invoice is one payment."""
    digest = hashlib.blake2b(f"{invoice_id}\x00{key}".encode(), digest_size=12).hexdigest()
    return f"pay_{digest}"


def balance_due(amount_due: Decimal, amount_paid: Decimal) -> Decimal:
    """What is still owed: the invoice's amount due (already net of credit notes) less payments."""
    return amount_due - amount_paid
