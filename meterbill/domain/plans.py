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

from meterbill.domain import limits
from meterbill.domain.charges import ChargeModel, get_model
from meterbill.domain.errors import InvalidField
from meterbill.domain.meters import check_code
from meterbill.domain.money import (MONEY, PERCENT, PRICE_DIGITS, QUANTITY, ROUNDING_MODES, UNIT_PRICE, AmountRule,
                                    decimals, integer_digits, minor_units, parse_amount, parse_decimal)
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


# -- what a client may save ----------------------------------------------------------------------
# ``parse_plan`` reads plans as stored (also versions saved before these limits); a plan a client
# saves -- a new plan, a simulated one, a customer's price overrides -- must also follow the amount
# grammar (``money``) and the size limits (``limits``). Every amount of every charge model is found
# by its key, the same in every model (tests/unit/test_amounts.py checks that each registered
# model's amounts are covered).
PLAN_AMOUNTS: Mapping[str, AmountRule] = {"base_fee": MONEY, "minimum_commitment": MONEY}
CHARGE_AMOUNTS: Mapping[str, AmountRule] = {
    "min_amount": MONEY, "free_units": QUANTITY,
    "unit_amount": UNIT_PRICE, "default_unit_amount": UNIT_PRICE, "holiday_unit_amount": UNIT_PRICE,
    "package_amount": UNIT_PRICE, "fixed_amount": UNIT_PRICE, "per_event_min": UNIT_PRICE,
    "per_event_max": UNIT_PRICE, "package_size": QUANTITY, "free_units_per_total_aggregation": QUANTITY,
    "free_units_per_events": QUANTITY, "rate": PERCENT}
ROW_AMOUNTS: Mapping[str, AmountRule] = {"up_to": QUANTITY, "unit_amount": UNIT_PRICE, "rate": PERCENT,
                                         "flat_amount": MONEY}
ROWS = ("tiers", "prices", "windows")   # a charge's lists of rows
_HUNDRED = Decimal(100)


def check_plan_input(raw: Mapping[str, Any], currency: str, prefix: str = "") -> None:
    """The amount grammar and size limits for a plan a client saves (after :func:`parse_plan`
    accepted it); errors name the field under ``prefix``."""
    limits.check_text(raw.get("name"), f"{prefix}name", limits.MAX_NAME)
    for key, rule in PLAN_AMOUNTS.items():
        if raw.get(key) is not None:
            parse_amount(raw[key], f"{prefix}{key}", rule, currency)
    charges = raw.get("charges") or []
    limits.check_count(charges, f"{prefix}charges", limits.MAX_CHARGES, "charges")
    for i, rc in enumerate(charges):
        check_charge_input(rc, currency, f"{prefix}charges[{i}]")
        check_price_span(rc, f"{prefix}charges[{i}]")
    limits.check_document(raw, limits.MAX_PLAN_BYTES, "plan", prefix)


def check_charge_input(rc: Mapping[str, Any], currency: str, path: str) -> None:
    """The grammar of every amount and the size of every text and list of one charge (or of the
    fields a customer's price overrides merge into one)."""
    limits.check_text(rc.get("display_name"), f"{path}.display_name", limits.MAX_NAME)
    limits.check_text(rc.get("unit"), f"{path}.unit", limits.MAX_UNIT)
    for key, rule in CHARGE_AMOUNTS.items():
        if rc.get(key) is not None:
            parse_amount(rc[key], f"{path}.{key}", rule, currency)
    for rows in ROWS:
        items = rc.get(rows)
        if type(items) is not list:
            continue
        limits.check_count(items, f"{path}.{rows}", limits.MAX_ROWS, rows)
        for j, row in enumerate(items):
            if not isinstance(row, Mapping):
                continue
            for key, rule in ROW_AMOUNTS.items():
                if row.get(key) is not None:
                    parse_amount(row[key], f"{path}.{rows}[{j}].{key}", rule, currency)
            limits.check_text(row.get("name"), f"{path}.{rows}[{j}].name", limits.MAX_NAME)
            match = row.get("match")
            if isinstance(match, Mapping):
                for dim, value in match.items():
                    limits.check_text(value, f"{path}.{rows}[{j}].match.{dim}", limits.MAX_VALUE)
    limits.check_count(rc.get("holidays"), f"{path}.holidays", limits.MAX_HOLIDAYS, "dates")
    if rc.get("package_size") is not None and rc.get("package_amount") is not None:
        _check_package(parse_decimal(rc["package_size"], f"{path}.package_size"),
                       parse_decimal(rc["package_amount"], f"{path}.package_amount"), path)


def _check_package(size: Decimal, amount: Decimal, path: str) -> None:
    """A period holds at most quantity / size packages (10^26 at a size of 10^-10): a package must
    cost less per unit than the largest unit price, or its line could outgrow every other."""
    per_unit = 10 ** UNIT_PRICE.integer_digits
    limit = size * per_unit
    if amount >= limit:
        raise InvalidField(f"{path}.package_amount", f"must be below {per_unit} per unit: a package of "
                                                     f"{format(size, 'f')} costs less than "
                                                     f"{format(limit.normalize(), 'f')}", "amount_out_of_range")


def unit_prices(rc: Mapping[str, Any], path: str) -> list[tuple[str, Decimal]]:
    """Every unit price of one charge, by path; a percentage rate as the price it is (rate / 100)."""
    found: list[tuple[str, Decimal]] = []

    def add(row: Mapping[str, Any], where: str) -> None:
        for key in ("unit_amount", "default_unit_amount", "holiday_unit_amount", "package_amount",
                    "fixed_amount", "per_event_min", "per_event_max", "rate"):
            if row.get(key) is not None:
                value = parse_decimal(row[key], f"{where}.{key}")
                found.append((f"{where}.{key}", value / _HUNDRED if key == "rate" else value))

    add(rc, path)
    for rows in ROWS:
        items = rc.get(rows)
        for j, row in enumerate(items if type(items) is list else []):
            if isinstance(row, Mapping):
                add(row, f"{path}.{rows}[{j}]")
    return found


def check_price_span(rc: Mapping[str, Any], path: str, name: Any = None) -> None:
    """The unit prices of one charge together span at most ``PRICE_DIGITS`` digits: the digits
    before the point of the largest plus the decimals of the most precise. ``name`` maps a price's
    path to the path an error should name (price overrides)."""
    prices = unit_prices(rc, path)
    if not prices:
        return
    wide = max(range(len(prices)), key=lambda i: integer_digits(prices[i][1]))
    fine = max(range(len(prices)), key=lambda i: decimals(prices[i][1]))
    widest, finest = prices[wide], prices[fine]
    span = integer_digits(widest[1]) + decimals(finest[1])
    if span <= PRICE_DIGITS:
        return
    blame, other = (widest, finest) if wide > fine else (finest, widest)  # the later one in the charge
    field = name(blame[0]) if name else blame[0]
    raise InvalidField(field, f"with {format(other[1], 'f')} ({name(other[0]) if name else other[0]}), the prices of "
                              f"one charge would span {span} digits ({integer_digits(widest[1])} before the "
                              f"point, {decimals(finest[1])} after it); at most {PRICE_DIGITS}, so that every "
                              "amount stays exact (a percentage counts as rate / 100)", "amount_out_of_range")
