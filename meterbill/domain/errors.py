"""One exception hierarchy for the domain; every error carries data, never parse its text."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error raised by the pure domain."""

    code = "domain_error"


class InvalidField(DomainError):
    """A value supplied by a client is not acceptable.

    ``field`` is a dotted/indexed path (``charges[0].tiers[1].up_to``); ``problem`` is a
    human sentence naming what is wrong, e.g. ``"must be a decimal string"``.
    """

    code = "invalid_field"

    def __init__(self, field: str, problem: str, code: str | None = None) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        if code:
            self.code = code


class UnknownCurrency(InvalidField):
    code = "unknown_currency"


class UnknownChargeModel(InvalidField):
    code = "unknown_charge_model"
