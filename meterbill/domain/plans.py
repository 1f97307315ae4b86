"""Plans: a currency, an interval, a base fee and usage charges (pure).

Plan-level terms: ``base_fee_timing`` ("arrears": the closing invoice bills the period that
ended; "advance": it bills the next period's fee, and the first invoice also the first
period's), ``minimum_commitment`` (a true-up line when the invoice falls short; prorated for a
partial period), ``rounding`` (how each line of its invoices, the true-up and the tax are rounded
to the minor unit: half_up (default), half_even, half_down, up, down). Charge-level terms
understood here, for every model: ``free_units`` (an allowance deducted before pricing;
quantity-priced models only), ``min_amount`` (the charge costs at least this; prorated for a
partial period), ``display_name``, ``unit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import ChargeModel, get_model
from meterbill.domain.errors import InvalidField
from meterbill.domain.meters import check_code
from meterbill.domain.money import ROUNDING_MODES, minor_units, parse_decimal
from meterbill.domain.periods import INTERVALS


QUANTITY_PRICED = frozenset({"per_unit", "graduated", "package", "volume"})
FREE_HINTS = {"graduated_percentage": "has none: a first tier with rate 0 makes an amount free"}
TIMINGS = ("arrears", "advance")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Charge:
    meter: str
    model: ChargeModel
    params: Any
    display_name: str | None = None
    free_units: Decimal = ZERO
    min_amount: Decimal = ZERO
    unit: str | None = None
    override: bool = False           # priced by the customer's contract terms, not the plan's


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    currency: str
    interval: str
    base_fee: Decimal
    charges: tuple[Charge, ...]
    name: str | None = None
    base_fee_timing: str = "arrears"
    minimum_commitment: Decimal = ZERO
    tax_inclusive: bool = False      # prices already contain tax
    rounding: str = ROUNDING_MODES["half_up"]  # a decimal ROUND_* constant
    version: int | None = None       # the stored plan version it was parsed from
    overridden: frozenset[str] = frozenset()  # plan-level terms replaced by customer overrides


def _optional_text(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is not None and type(value) is not str:
        raise InvalidField(f"{path}{key}", "must be a string")
    return value


def _charge(rc: Any, path: str) -> Charge:
    if type(rc) is not dict:
        raise InvalidField(path, "must be an object")
    meter = check_code(rc.get("meter"), f"{path}.meter")
    model = get_model(rc.get("model"), path)
    free = parse_decimal(rc.get("free_units", "0"), f"{path}.free_units")
    if free and model.name not in QUANTITY_PRICED:
        own = FREE_HINTS.get(model.name, "has its own terms")
        raise InvalidField(f"{path}.free_units", f"applies to {', '.join(sorted(QUANTITY_PRICED))} charges; "
                                                 f"'{model.name}' {own}")
    return Charge(meter, model, model.parse(rc, path), _optional_text(rc, "display_name", f"{path}."),
                  free, parse_decimal(rc.get("min_amount", "0"), f"{path}.min_amount"),
                  _optional_text(rc, "unit", f"{path}."))


def parse_plan(code: str, raw: Mapping[str, Any]) -> Plan:
    check_code(code)
    currency = raw.get("currency")
    if type(currency) is not str:
        raise InvalidField("currency", "is required: an ISO 4217 code such as \"USD\"")
    minor_units(currency)
    interval = raw.get("interval", "month")
    if interval not in INTERVALS:
        raise InvalidField("interval", f"must be one of: {', '.join(INTERVALS)}")
    base_fee = parse_decimal(raw.get("base_fee", "0"), "base_fee")
    raw_charges = raw.get("charges", [])
    if type(raw_charges) is not list:
        raise InvalidField("charges", "must be a list")
    charges: list[Charge] = []
    for i, rc in enumerate(raw_charges):
        charge = _charge(rc, f"charges[{i}]")
        if any(c.meter == charge.meter for c in charges):
            raise InvalidField(f"charges[{i}].meter", f"meter '{charge.meter}' is already charged by this plan")
        charges.append(charge)
    timing = raw.get("base_fee_timing", "arrears")
    if timing not in TIMINGS:
        raise InvalidField("base_fee_timing", "must be 'arrears' or 'advance'")
    commitment = parse_decimal(raw.get("minimum_commitment", "0"), "minimum_commitment")
    inclusive = raw.get("tax_inclusive", False)
    if type(inclusive) is not bool:
        raise InvalidField("tax_inclusive", "must be true or false")
    rounding = raw.get("rounding", "half_up")
    if type(rounding) is not str or rounding not in ROUNDING_MODES:
        raise InvalidField("rounding", f"must be one of: {', '.join(ROUNDING_MODES)}")
    version = raw.get("version")
    return Plan(code, currency, interval, base_fee, tuple(charges), _optional_text(raw, "name", ""),
                timing, commitment, inclusive, ROUNDING_MODES[rounding], int(version) if version is not None else None)
