"""Catalog: meters, plans and customers (validation in the domain, storage via the port)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from meterbill.domain import limits
from meterbill.domain.contracts import (change_at, check_overrides, check_overrides_input, effective_plan, entry, rebase,
                                       with_change)
from meterbill.domain.errors import InvalidField
from meterbill.domain.events import EARLIEST_MS
from meterbill.domain.dunning import COLLECTION_METHODS
from meterbill.domain.ids import check_id
from meterbill.domain.instants import from_ms, iso, parse_instant
from meterbill.domain.meters import ADDITIVE, Meter, check_code, check_meter_input, meter_to_dict, parse_meter
from meterbill.domain.money import MONEY, format_amount, parse_amount
from meterbill.domain.periods import period_containing
from meterbill.domain.plans import Charge, Plan, check_plan_input, parse_plan
from meterbill.domain.taxes import TaxRate, check_tax_rate_input, parse_tax_rate
from meterbill.ports import BillingStore, Clock
from meterbill.services.cache import TTLMap, TTLValue
from meterbill.services.errors import Conflict, NotFound

CUSTOMER_FIELDS = ("name", "email", "plan", "started_at", "billing_anchor", "timezone",
                   "payment_terms_days", "address", "metadata", "invoice_grace_hours", "tax_exempt", "tax_id",
                   "progressive_threshold", "price_overrides", "plan_effective_at", "backdate", "tags",
                   "collection_method")
ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")


class CatalogService:
    def __init__(self, store: BillingStore, clock: Clock, *, cache_ttl_s: float = 10.0) -> None:
        self._store = store
        self._clock = clock
        self._meters = TTLValue(self._load_meters, cache_ttl_s)
        self._plans = TTLMap(self._load_plans, cache_ttl_s)
        self._plan_versions: dict[tuple[str, int, str], Plan] = {}
        self._effective = TTLMap(self._load_effective, cache_ttl_s)   # plan + customer overrides
        self._customers = TTLMap(self._store.get_customers, cache_ttl_s)
        self._tax_rates = TTLValue(lambda: [parse_tax_rate(d["code"], d) for d in self._store.all_catalog("TAX")],
                                   cache_ttl_s)

    def _save(self, kind: str, code: str, doc: dict[str, Any], current: dict[str, Any] | None) -> None:
        """Create, or replace as the next version (optimistic: fails if someone else saved first)."""
        if current is not None:
            doc.update(created_at=current["created_at"], version=int(current["version"]) + 1)
        self._store.put_catalog(kind, code, doc, None if current is None else int(current["version"]))

    # -- meters ----------------------------------------------------------------------
    def put_meter(self, code: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        meter = parse_meter(code, raw)
        check_meter_input(raw)
        current = self._store.get_catalog("METER", code)
        now = iso(self._clock())
        doc = {**meter_to_dict(meter), "created_at": now, "updated_at": now, "version": 1}
        if current is not None:
            if parse_meter(code, current).semantics() != meter.semantics():
                raise Conflict(f"meter '{code}' already exists with a different event_type, aggregation, "
                               "property, filter, group_by or keep_values; recorded usage would no longer match. "
                               "Create a new meter code instead", field="code")
        self._save("METER", code, doc, current)
        self._meters.invalidate()
        return doc

    def _get(self, kind: str, code: str, label: str, field: str = "code") -> dict[str, Any]:
        doc = self._store.get_catalog(kind, check_code(code))
        if doc is None:
            raise NotFound(f"{label} '{code}' does not exist", field=field)
        return doc

    def get_meter(self, code: str) -> dict[str, Any]:
        return self._get("METER", code, "meter")

    def list_catalog(self, kind: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return self._store.list_catalog(kind, limit, cursor)

    def _load_meters(self) -> dict[str, Meter]:
        return {d["code"]: parse_meter(d["code"], d) for d in self._store.all_catalog("METER")}

    def meters(self) -> dict[str, Meter]:
        return self._meters.get()

    def meters_by_type(self, fresh: bool = False) -> dict[str, list[Meter]]:
        """``fresh``: read the stored meters now, not the cached ones (the aggregator, per batch)."""
        by_type: dict[str, list[Meter]] = {}
        for m in (self._load_meters() if fresh else self.meters()).values():
            by_type.setdefault(m.event_type, []).append(m)
        return by_type

    # -- tax rates -------------------------------------------------------------------
    def put_tax_rate(self, code: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        rate = parse_tax_rate(code, raw)
        check_tax_rate_input(raw)
        current = self._store.get_catalog("TAX", code)
        now = iso(self._clock())
        doc = {"code": code, "name": rate.name, "percentage": format(rate.percentage, "f"), "country": rate.country,
               "state": rate.state, "created_at": now, "updated_at": now, "version": 1}
        self._save("TAX", code, doc, current)
        self._tax_rates.invalidate()
        return doc

    def get_tax_rate(self, code: str) -> dict[str, Any]:
        return self._get("TAX", code, "tax rate")

    def tax_rates(self) -> list[TaxRate]:
        return self._tax_rates.get()

    # -- plans -----------------------------------------------------------------------
    def candidate_plan(self, raw: Mapping[str, Any], code: str = "candidate", prefix: str = "plan.") -> Plan:
        """Parse and check a plan against the existing meters, without storing it."""
        try:
            plan = parse_plan(code, raw)
            check_plan_meters(plan, self._load_meters())
            check_plan_input(raw, plan.currency)
        except InvalidField as exc:
            raise InvalidField(prefix + exc.field, exc.problem, exc.code) from exc
        return plan

    def put_plan(self, code: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        plan = self.candidate_plan(raw, code, prefix="")
        current = self._store.get_catalog("PLAN", code)
        now = iso(self._clock())
        doc = {**raw, "code": code, "currency": plan.currency, "interval": plan.interval,
               "created_at": now, "updated_at": now, "version": 1}
        if current is not None:
            if current["currency"] != plan.currency:
                raise Conflict(f"plan '{code}' is billed in {current['currency']}; a plan's currency "
                               "cannot change", field="currency")
        self._save("PLAN", code, doc, current)
        self._plans.invalidate(code)
        self._effective.clear()
        return doc

    def get_plan_doc(self, code: str) -> dict[str, Any]:
        return self._get("PLAN", code, "plan", field="plan")

    def _load_plans(self, codes: list[str]) -> dict[str, Plan]:
        out = {}
        for code in codes:
            doc = self._store.get_catalog("PLAN", code)
            if doc is not None:
                out[code] = parse_plan(code, doc)
        return out

    def plan(self, code: str) -> Plan:
        found = self._plans.get_many({code})
        if code not in found:
            raise NotFound(f"plan '{code}' does not exist", field="plan")
        return found[code]

    def _plan_version_doc(self, code: str, version: int) -> dict[str, Any]:
        doc = self._store.get_catalog("PLAN", code, version)
        if doc is None:  # saved before versions were archived: only the current one is known
            doc = self._store.get_catalog("PLAN", code)
            if doc is None or int(doc["version"]) != version:
                raise NotFound(f"plan '{code}' version {version} is not stored", field="plan")
        return doc

    def effective_plan(self, code: str, overrides: Mapping[str, Any] | None, version: int | None = None) -> Plan:
        """Plan ``code`` with a customer's ``price_overrides`` (cached): its current version, or
        exactly ``version`` (saved versions are immutable: re-rating a closed period)."""
        if version is not None:
            key_v = (code, version, json.dumps(overrides or {}, sort_keys=True, default=str))
            if key_v not in self._plan_versions:
                doc = self._plan_version_doc(code, version)
                self._plan_versions[key_v] = effective_plan(code, doc, overrides, lambda p: None) if overrides \
                    else parse_plan(code, doc)
            return self._plan_versions[key_v]
        if not overrides:
            return self.plan(code)
        key = f"{code}\x1f{json.dumps(overrides, sort_keys=True, default=str)}"
        found = self._effective.get_many({key})
        if key not in found:
            raise NotFound(f"plan '{code}' does not exist", field="plan")
        return found[key]

    def _load_effective(self, keys: list[str]) -> dict[str, Plan]:
        out = {}
        for key in keys:
            code, overrides = key.split("\x1f", 1)
            doc = self._store.get_catalog("PLAN", code)
            if doc is not None:
                out[key] = effective_plan(code, doc, json.loads(overrides),
                                          lambda plan: check_plan_meters(plan, self.meters()))
        return out

    # -- customers -------------------------------------------------------------------
    def customers(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """Cached profile lookup for hot paths (ingest, aggregation)."""
        return self._customers.get_many(ids)

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        doc = self._store.get_customer(customer_id)
        if doc is None:
            raise NotFound(f"customer '{customer_id}' does not exist", field="id")
        return doc

    def put_customer(self, customer_id: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        check_id(customer_id)
        unknown = sorted(set(raw) - set(CUSTOMER_FIELDS) - {"id"})
        if unknown:
            raise InvalidField(unknown[0], "is not a known field; expected one of: " + ", ".join(CUSTOMER_FIELDS))
        current = self._store.get_customer(customer_id)
        now = self._clock()
        name = raw.get("name")
        if type(name) is not str or not name.strip():
            raise InvalidField("name", "is required: the customer's legal or display name")
        limits.check_text(name, "name", limits.MAX_NAME)
        email = raw.get("email")
        if email is not None and (type(email) is not str or "@" not in email or len(email) > 254):
            raise InvalidField("email", "must be an e-mail address")
        plan_code = raw.get("plan")
        if type(plan_code) is not str:
            raise InvalidField("plan", "is required: the code of an existing plan")
        plan = self.plan(plan_code)
        tz = raw.get("timezone", "UTC")
        terms = raw.get("payment_terms_days", 30)
        if type(terms) is not int or not 0 <= terms <= 365:
            raise InvalidField("payment_terms_days", "must be a whole number of days from 0 to 365")
        collection = raw.get("collection_method")
        if collection is not None and collection not in COLLECTION_METHODS:
            raise InvalidField("collection_method", f"must be one of {', '.join(COLLECTION_METHODS)} "
                                                    "(or omitted: the deployment's default)")
        address = _address(raw.get("address"))
        exempt = raw.get("tax_exempt", False)
        if type(exempt) is not bool:
            raise InvalidField("tax_exempt", "must be true or false")
        tax_id = raw.get("tax_id")
        if tax_id is not None and (type(tax_id) is not str or not 2 <= len(tax_id) <= 32):
            raise InvalidField("tax_id", "must be a tax registration number such as \"DE123456789\"")
        grace = raw.get("invoice_grace_hours")
        if grace is not None and (type(grace) is not int or not 0 <= grace <= 720):
            raise InvalidField("invoice_grace_hours", "must be a whole number of hours from 0 to 720")
        threshold = raw.get("progressive_threshold")
        if threshold is not None:
            threshold = parse_amount(threshold, "progressive_threshold", MONEY, plan.currency)
            if threshold <= 0:
                raise InvalidField("progressive_threshold", f"must be a positive amount in {plan.currency}")
            threshold = format_amount(threshold, plan.currency)
        metadata = limits.check_metadata(raw.get("metadata"))
        tags = limits.check_tags(raw.get("tags"))
        if "started_at" in raw:
            started = parse_instant(raw["started_at"], "started_at")
        elif current is not None:
            started = parse_instant(current["started_at"], "started_at")
        else:
            started = self._default_start(customer_id, now)
        if current is None or iso(started) != current["started_at"]:
            check_start(started, now, raw.get("backdate") or False, given="started_at" in raw)
        anchor = parse_instant(raw["billing_anchor"], "billing_anchor") if "billing_anchor" in raw else (
            parse_instant(current["billing_anchor"], "billing_anchor") if current else started)
        first = period_containing(anchor, plan.interval, tz, started)  # validates tz + interval
        history = self._plan_history(raw, current, plan, started, now)
        doc: dict[str, Any] = {
            "id": customer_id, "name": name, "email": email, "plan": plan_code, "currency": plan.currency,
            "price_overrides": history[-1]["price_overrides"], "plan_history": history,
            "plan_effective_at": history[-1]["from"],
            "started_at": iso(started), "billing_anchor": iso(anchor), "timezone": tz,
            "payment_terms_days": terms, "collection_method": collection, "address": address, "metadata": metadata,
            "invoice_grace_hours": grace, "tax_exempt": exempt, "tax_id": tax_id,
            "progressive_threshold": threshold, "created_at": iso(now), "updated_at": iso(now), "version": 1,
            "closed_through": "", "next_close": iso(first.end), "tags": tags}
        limits.check_document(doc, limits.MAX_CUSTOMER_BYTES, "customer")
        if current is None:
            self._store.put_customer(doc, None)
            self._store.clear_pending(customer_id)
        else:
            if current.get("closed_through"):
                for key in ("started_at", "billing_anchor", "timezone", "currency"):
                    if doc[key] != current[key]:
                        raise Conflict(f"'{key}' cannot change once the customer has been invoiced",
                                       field=key)
            doc.update(created_at=current["created_at"], version=int(current["version"]) + 1,
                       closed_through=current["closed_through"], progressive=current.get("progressive"))
            if current.get("closing_through"):
                doc["closing_through"] = current["closing_through"]  # a billing run's fence
            if current["closed_through"]:
                closed = parse_instant(current["closed_through"], "closed_through")
                doc["next_close"] = iso(period_containing(anchor, plan.interval, tz, closed).end)
            self._store.put_customer(doc, int(current["version"]))
        if threshold is not None or (current is not None and current.get("progressive_threshold")):
            self._store.set_progressive(customer_id, threshold is not None)
        self._customers.invalidate(customer_id)
        return doc

    def _plan_history(self, raw: Mapping[str, Any], current: dict[str, Any] | None, plan: Plan,
                      started: datetime, now: datetime) -> list[dict[str, Any]]:
        """The plan history after this request. Another plan, or other price overrides, take effect
        at ``plan_effective_at`` (default now), moved to the next usage-bucket boundary; omitted
        overrides are kept on the same plan and dropped by a plan change."""
        same_plan = current is not None and current["plan"] == plan.code
        if "price_overrides" in raw:
            overrides = check_overrides(raw["price_overrides"])
        else:
            overrides = dict(current.get("price_overrides") or {}) if current and same_plan else {}
        if overrides:  # errors name price_overrides.…
            plan_doc = self.get_plan_doc(plan.code)
            effective_plan(plan.code, plan_doc, overrides, lambda p: check_plan_meters(p, self._load_meters()))
            check_overrides_input(plan.code, plan_doc, overrides, plan.currency)
        requested = parse_instant(raw["plan_effective_at"], "plan_effective_at") if "plan_effective_at" in raw else None
        if current is None:
            if requested is not None:
                raise InvalidField("plan_effective_at", "applies to a plan change of an existing customer; "
                                                        "a new customer's plan starts at started_at")
            return [entry(plan.code, started, overrides)]
        history = rebase(current.get("plan_history") or [
            entry(current["plan"], parse_instant(current["started_at"], "started_at"),
                  current.get("price_overrides") or {})], started)
        last = history[-1]
        if requested is None and same_plan and (last.get("price_overrides") or {}) == overrides:
            return history
        requested = requested or now
        if requested < started:
            raise InvalidField("plan_effective_at", f"is before the subscription started ({iso(started)})")
        closed = current["closed_through"]
        if closed and requested < parse_instant(closed, "closed_through"):
            raise InvalidField("plan_effective_at", f"falls inside an already-invoiced period (invoiced through "
                                                    f"{closed}); a change can take effect from then on")
        history = with_change(history, entry(plan.code, started if requested == started else change_at(requested),
                                             overrides))
        if len(history) > 1:  # the plan in effect before the change: one invoice may hold both
            before = self.plan(history[-2]["plan"])
            for term, what in (("currency", "currency"), ("interval", "billing interval"),
                               ("tax_inclusive", "tax treatment (tax_inclusive)")):
                if getattr(before, term) != getattr(plan, term):
                    raise Conflict(f"plan '{plan.code}' differs from plan '{before.code}' in {what}: changing the "
                                   f"{what} mid-subscription is not supported yet", field="plan")
        return history

    def _default_start(self, customer_id: str, now: datetime) -> datetime:
        """Usage sent before the customer existed (pending) is billed: start at the first of it."""
        first = self._store.first_usage_bucket(customer_id)
        if first is not None and first * 1000 < now.timestamp() * 1000:
            return from_ms(first * 1000)
        return now


MAX_BACKDATE_DAYS = 92   # a quarter: a customer entered late for this or last month, or a quarterly plan
EARLIEST_START = from_ms(EARLIEST_MS)  # 2000-01-01: no event can be older


def check_start(started: datetime, now: datetime, backdate: object, *, given: bool) -> None:
    """A new or moved ``started_at`` more than ``MAX_BACKDATE_DAYS`` back makes the next run invoice
    every period since (decades for "1999"): only with ``"backdate": true``, and never before 2000."""
    if type(backdate) is not bool:
        raise InvalidField("backdate", "must be true or false")
    if started < EARLIEST_START:
        raise InvalidField("started_at", "must not be before 2000-01-01T00:00:00Z (no event can be older)")
    days = (now - started).days
    if days > MAX_BACKDATE_DAYS and not backdate:
        what = (f"is {days} days ago" if given else
                f"defaults to this customer's first pending usage, {iso(started)}, {days} days ago")
        raise InvalidField("started_at", f"{what}: the next billing run would invoice every period since. "
                                         f"Send \"backdate\": true to confirm a start more than {MAX_BACKDATE_DAYS} "
                                         "days back" + ("" if given else ", or give a later started_at"),
                           "backdate_required")


def check_plan_meters(plan: Plan, meters: Mapping[str, Meter]) -> None:
    for i, charge in enumerate(plan.charges):
        if charge.meter not in meters:
            raise InvalidField(f"charges[{i}].meter", f"meter '{charge.meter}' does not exist; create it first")
        check_charge_fits_meter(charge, meters[charge.meter], f"charges[{i}]")


def check_charge_fits_meter(charge: Charge, meter: Meter, path: str) -> None:
    """What only the pair (charge model, meter) can decide, checked when the plan is saved."""
    model = charge.model
    if getattr(model, "additive_only", False) and meter.aggregation not in ADDITIVE:
        raise InvalidField(f"{path}.model", f"'{model.name}' needs a count or sum meter; meter "
                                            f"'{meter.code}' aggregates with {meter.aggregation}")
    dims = getattr(charge.params, "dimensions", None)
    if model.name == "matrix" and tuple(dims or ()) != meter.group_by:
        raise InvalidField(f"{path}.dimensions", f"must equal meter '{meter.code}' group_by "
                                                 f"{list(meter.group_by)}")
    if model.name == "percentage" and not meter.keep_values:
        for key in ("per_event_min", "per_event_max"):
            if getattr(charge.params, key, None) is not None:
                raise InvalidField(f"{path}.{key}", f"needs the exact value of each event: meter "
                                                    f"'{meter.code}' must be a sum meter with keep_values: true "
                                                    "(a new meter code; a meter's semantics cannot change)")


def _address(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidField("address", "must be an object with " + ", ".join(ADDRESS_FIELDS))
    for key, item in value.items():
        if key not in ADDRESS_FIELDS:
            raise InvalidField(f"address.{key}", "is not a known field; expected one of: " + ", ".join(ADDRESS_FIELDS))
        if type(item) is not str:
            raise InvalidField(f"address.{key}", "must be a string")
        limits.check_text(item, f"address.{key}", limits.MAX_ADDRESS_FIELD)
    country = value.get("country")
    if country is not None and (len(country) != 2 or not country.isalpha() or not country.isupper()):
        raise InvalidField("address.country", "must be an ISO 3166-1 alpha-2 code such as \"US\"")
    return dict(value)
