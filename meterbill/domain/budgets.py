"""Spend budgets: an amount per billing period, alert thresholds as percentages of it, and the
answer to "does this much more spend stay within budget?". Pure: amounts are Decimals in the
budget's currency; the running bill (what the open period has cost so far) is passed in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.money import MONEY, format_amount, parse_amount

DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLDS = 10
MAX_PERCENT = 1000


@dataclass(frozen=True, slots=True)
class Budget:
    amount: Decimal
    currency: str
    thresholds: tuple[int, ...]

    def crossed(self, spent: Decimal) -> tuple[int, ...]:
        """The thresholds ``spent`` has reached (spent >= amount × t / 100), lowest first."""
        return tuple(t for t in self.thresholds if spent * 100 >= self.amount * t)

    def as_doc(self) -> dict[str, Any]:
        """Stored and shown as the API shows money: a decimal string in the currency's minor unit."""
        return {"amount": format_amount(self.amount, self.currency), "currency": self.currency,
                "thresholds": list(self.thresholds)}


def parse_thresholds(value: object, field: str = "thresholds") -> tuple[int, ...]:
    """1 to MAX_THRESHOLDS whole percentages (1 to MAX_PERCENT), each once; sorted."""
    if value is None:
        return DEFAULT_THRESHOLDS
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidField(field, "must be a list of whole percentages such as [50, 80, 100]")
    if not 1 <= len(value) <= MAX_THRESHOLDS:
        raise InvalidField(field, f"must list 1 to {MAX_THRESHOLDS} percentages")
    out: list[int] = []
    for i, t in enumerate(value):
        if isinstance(t, str) and t.isascii() and t.isdigit() and len(t) <= 4:
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= MAX_PERCENT:
            raise InvalidField(f"{field}[{i}]", f"must be a whole percentage from 1 to {MAX_PERCENT}")
        if t in out:
            raise InvalidField(f"{field}[{i}]", f"repeats {t}")
        out.append(t)
    return tuple(sorted(out))


def parse_budget(raw: Mapping[str, Any], currency: str) -> Budget:
    """A budget as a client sends it (``amount``, optional ``currency``, optional ``thresholds``).
    The currency must be the customer's (``currency``): spend is billed in it."""
    sent = raw.get("currency")
    if sent is not None and (not isinstance(sent, str) or sent.upper() != currency.upper()):
        raise InvalidField("currency", f"must be the customer's billing currency, {currency}")
    if raw.get("amount") is None:
        raise InvalidField("amount", "is required")
    amount = parse_amount(raw["amount"], "amount", MONEY, currency)
    if amount <= 0:
        raise InvalidField("amount", "must be greater than zero", "amount_out_of_range")
    return Budget(amount, currency.upper(), parse_thresholds(raw.get("thresholds")))


def budget_from_doc(doc: Mapping[str, Any]) -> Budget:
    return Budget(Decimal(str(doc["amount"])), str(doc["currency"]), tuple(int(t) for t in doc["thresholds"]))


@dataclass(frozen=True, slots=True)
class SpendCheck:
    spent: Decimal
    amount: Decimal
    budget: Budget | None

    @property
    def projected(self) -> Decimal:
        return self.spent + self.amount

    @property
    def within_budget(self) -> bool:
        return self.budget is None or self.projected <= self.budget.amount

    @property
    def remaining(self) -> Decimal | None:
        return None if self.budget is None else self.budget.amount - self.spent
