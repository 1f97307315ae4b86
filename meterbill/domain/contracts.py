"""Customer contract terms (pure): price overrides on top of a plan, and the plan history that
splits a billing period at every plan change.

``price_overrides``: ``base_fee``, ``minimum_commitment``, ``base_fee_timing`` replace the plan's;
``charges`` maps a meter the plan charges to fields merged into that charge (a different
``model`` replaces the charge's pricing fields: give the new model's full parameters). The result
is parsed by the same ``parse_plan`` as any plan; errors name ``price_overrides.…``.

``plan_history``: ``[{"plan", "from", "price_overrides"}]`` in order of ``from`` (RFC 3339); the
first entry starts with the subscription. Changes take effect on a usage-bucket boundary.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.instants import from_ms, iso, parse_instant, to_ms
from meterbill.domain.meters import BUCKET_SECONDS
from meterbill.domain.periods import Period
from meterbill.domain.money import MONEY, parse_amount
from meterbill.domain.plans import Plan, check_charge_input, check_price_span, parse_plan

OVERRIDABLE = ("base_fee", "minimum_commitment", "base_fee_timing", "charges")
KEPT_ON_MODEL_CHANGE = ("meter", "display_name", "unit")
_CHARGE_PATH = re.compile(r"charges\[(\d+)\](.*)")


def check_overrides(raw: Any) -> dict[str, Any]:
    """The shape of ``price_overrides`` (values are checked when merged into a plan)."""
    if raw is None:
        return {}
    if type(raw) is not dict:
        raise InvalidField("price_overrides", "must be an object: " + ", ".join(OVERRIDABLE))
    for key in raw:
        if key not in OVERRIDABLE:
            raise InvalidField(f"price_overrides.{key}", "cannot be overridden per customer; expected one of: "
                                                         + ", ".join(OVERRIDABLE))
    charges = raw.get("charges", {})
    if type(charges) is not dict:
        raise InvalidField("price_overrides.charges", "must be an object keyed by meter code")
    for meter, fields in charges.items():
        if type(fields) is not dict or not fields:
            raise InvalidField(f"price_overrides.charges.{meter}", "must be a non-empty object of charge fields")
        if "meter" in fields:
            raise InvalidField(f"price_overrides.charges.{meter}.meter", "cannot change: the key names the meter")
    return raw


def apply_overrides(code: str, plan_doc: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The plan document with the overrides merged in (not validated: see :func:`effective_plan`)."""
    merged = {**plan_doc, **{k: v for k, v in overrides.items() if k != "charges"}}
    charges = [dict(c) for c in plan_doc.get("charges", [])]
    index = {c.get("meter"): i for i, c in enumerate(charges)}
    for meter, fields in overrides.get("charges", {}).items():
        if meter not in index:
            raise InvalidField(f"price_overrides.charges.{meter}", f"plan '{code}' does not charge meter '{meter}'")
        base = charges[index[meter]]
        if "model" in fields and fields["model"] != base.get("model"):
            base = {k: base[k] for k in KEPT_ON_MODEL_CHANGE if k in base}
        charges[index[meter]] = {**base, **fields}
    merged["charges"] = charges
    return merged


def effective_plan(code: str, plan_doc: Mapping[str, Any], overrides: Mapping[str, Any],
                   check: Callable[[Plan], None] = lambda plan: None) -> Plan:
    """``plan_doc`` with a customer's overrides, parsed and ``check``ed like a plan; the lines
    priced by overridden terms are marked. Errors in overridden terms name ``price_overrides.…``."""
    check_overrides(overrides)
    merged = apply_overrides(code, plan_doc, overrides)
    try:
        plan = parse_plan(code, merged)
        check(plan)
    except InvalidField as exc:
        raise InvalidField(_override_path(exc.field, merged, overrides), exc.problem, exc.code) from exc
    overridden = overrides.get("charges", {})
    own = {c.meter: c for c in parse_plan(code, plan_doc).charges}
    for charge in plan.charges:
        if charge.meter in overridden and charge == own[charge.meter]:  # e.g. unit_amount on a tiered charge
            raise InvalidField(f"price_overrides.charges.{charge.meter}",
                               f"changes nothing in the plan's '{charge.model.name}' charge: it does not use "
                               f"these fields or has the same values")
    return dataclasses.replace(plan, overridden=frozenset(k for k in overrides if k != "charges"),
                               charges=tuple(dataclasses.replace(c, override=c.meter in overridden)
                                             for c in plan.charges))


def check_overrides_input(code: str, plan_doc: Mapping[str, Any], overrides: Mapping[str, Any],
                          currency: str) -> None:
    """The amount grammar and size limits for price overrides a client saves (``plans.check_plan_input``
    for the overridden terms; the joint span of an overridden charge's prices, merged with the plan's)."""
    for key in ("base_fee", "minimum_commitment"):
        if overrides.get(key) is not None:
            parse_amount(overrides[key], f"price_overrides.{key}", MONEY, currency)
    merged = apply_overrides(code, plan_doc, overrides)
    for meter, fields in overrides.get("charges", {}).items():
        path = f"price_overrides.charges.{meter}"
        check_charge_input(fields, currency, path)
        charge = next(c for c in merged["charges"] if c.get("meter") == meter)
        check_price_span(charge, path, lambda p, f=fields, at=path: _written_at(p, f, at))


def _written_at(path: str, fields: Mapping[str, Any], at: str) -> str:
    """A merged charge's price path as written by the overrides, or the overridden charge itself
    for a price that comes from the plan."""
    key = path[len(at) + 1:].split(".")[0].split("[")[0]
    return path if key in fields else at


def _override_path(field: str, merged: Mapping[str, Any], overrides: Mapping[str, Any]) -> str:
    found = _CHARGE_PATH.fullmatch(field)
    if found:
        meter = merged["charges"][int(found[1])].get("meter")
        if meter in overrides.get("charges", {}):
            return f"price_overrides.charges.{meter}{found[2]}"
    elif field in overrides:
        return f"price_overrides.{field}"
    return field


# -- plan history ---------------------------------------------------------------------------
def change_at(requested: datetime) -> datetime:
    """Usage is kept in ``BUCKET_SECONDS`` buckets: a change takes effect at the first bucket
    boundary at or after the requested instant."""
    ms = to_ms(requested)
    step = BUCKET_SECONDS * 1000
    return from_ms(-(-ms // step) * step)


def entry(plan: str, start: datetime, overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {"plan": plan, "from": iso(start), "price_overrides": dict(overrides)}


def with_change(history: Sequence[Mapping[str, Any]], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """History with ``new`` in effect from its ``from``: entries starting at or after it are replaced."""
    start = parse_instant(new["from"], "plan_effective_at")
    return [*(dict(e) for e in history if parse_instant(e["from"], "from") < start), dict(new)]


def rebase(history: Sequence[Mapping[str, Any]], started: datetime) -> list[dict[str, Any]]:
    """History of a subscription starting at ``started``: the first entry begins there."""
    later = [dict(e) for e in history if parse_instant(e["from"], "from") > started]
    before = [dict(e) for e in history if parse_instant(e["from"], "from") <= started]
    first = before[-1] if before else later.pop(0)
    return [{**first, "from": iso(started)}, *later]


def split(history: Sequence[Mapping[str, Any]], period: Period) -> list[tuple[Mapping[str, Any], Period]]:
    """The period cut at every change inside it: (history entry, its part of the period), in order."""
    starts = [parse_instant(e["from"], "from") for e in history]
    current = 0
    for i, start in enumerate(starts):
        if start <= period.start:
            current = i
    parts: list[tuple[Mapping[str, Any], Period]] = []
    begin = period.start
    for i in range(current + 1, len(history)):
        if starts[i] >= period.end:
            break
        if starts[i] > begin:
            parts.append((history[current], Period(begin, starts[i], period.index)))
            begin = starts[i]
        current = i
    parts.append((history[current], Period(begin, period.end, period.index)))
    return parts


def in_effect_before(history: Sequence[Mapping[str, Any]], instant: datetime) -> Mapping[str, Any] | None:
    """The entry in effect just before ``instant`` (None: the subscription had not started)."""
    found = None
    for e in history:
        if parse_instant(e["from"], "from") < instant:
            found = e
    return found
