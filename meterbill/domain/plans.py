"""Plans: a currency, an interval, a base fee and usage charges (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.domain.charges import ChargeModel, get_model
from meterbill.domain.errors import InvalidField
from meterbill.domain.meters import check_code
from meterbill.domain.money import minor_units, parse_decimal
from meterbill.domain.periods import INTERVALS


@dataclass(frozen=True, slots=True)
class Charge:
    meter: str
    model: ChargeModel
    params: Any
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    currency: str
    interval: str
    base_fee: Decimal
    charges: tuple[Charge, ...]
    name: str | None = None


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
    charges = []
    seen: set[str] = set()
    for i, rc in enumerate(raw_charges):
        path = f"charges[{i}]"
        if type(rc) is not dict:
            raise InvalidField(path, "must be an object")
        meter = check_code(rc.get("meter"), f"{path}.meter")
        if meter in seen:
            raise InvalidField(f"{path}.meter", f"meter '{meter}' is already charged by this plan")
        seen.add(meter)
        model = get_model(rc.get("model"), path)
        display = rc.get("display_name")
        if display is not None and type(display) is not str:
            raise InvalidField(f"{path}.display_name", "must be a string")
        charges.append(Charge(meter, model, model.parse(rc, path), display))
    name = raw.get("name")
    if name is not None and type(name) is not str:
        raise InvalidField("name", "must be a string")
    return Plan(code, currency, interval, base_fee, tuple(charges), name)
