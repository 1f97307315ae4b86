"""Request bodies (pydantic): they shape the OpenAPI document and reject wrong JSON types early.
Amounts are decimal strings; deep rules (tiers ascending, currency known…) live in the domain."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from meterbill.domain.meters import CODE_PATTERN
from meterbill.domain.money import MINOR_UNITS

Amount = Field(pattern=r"^-?\d+(\.\d+)?$", description="decimal string, e.g. \"12.34\"")


def _no_null_in_schema(schema: dict[str, Any], cls: Any) -> None:
    """An optional field is omitted, not null, unless the model lists it in NULLABLE: the document
    says what the validator below enforces."""
    for name, prop in schema.get("properties", {}).items():
        variants = prop.get("anyOf")
        if name in cls.NULLABLE or not variants:
            continue
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) < len(variants):
            prop.pop("anyOf")
            prop.update(rest[0]) if len(rest) == 1 else prop.update(anyOf=rest)
            if prop.get("default", 0) is None:
                prop.pop("default")


COUNTRY = r"^[A-Z]{2}$"
NOT_BLANK = r"\S"  # at least one character that is not white space
# RFC 3339 as the domain reads it (datetime.fromisoformat): upper-case T and Z, no leap second.
INSTANT = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
           r"(Z|[+-][0-9]{2}:[0-5][0-9])$")


def instant(description: str) -> Any:
    return Field(default=None, pattern=INSTANT, description=description, json_schema_extra={"format": "date-time"},
                 examples=["2026-10-01T00:00:00Z"])


class Strict(BaseModel):
    """No unknown fields, no type coercion (``0`` is not ``false``, ``"5"`` is not ``5``), no null
    for a field but those in NULLABLE (leave a field out to leave it unset)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_no_null_in_schema)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("must not be null; leave the field out instead")
        if type(value) is float and value.is_integer() and abs(value) < 2 ** 53:
            return int(value)  # JSON Schema's integer includes 30.0; a float is never taken for a string
        return value


def _with(terms: dict[str, Any]) -> Any:
    def extra(schema: dict[str, Any], cls: Any) -> None:
        _no_null_in_schema(schema, cls)
        schema.update(terms)
    return extra


# What parse_meter checks across fields: a property for every aggregation but count; keep_values only on sum.
METER_TERMS = {"allOf": [
    {"if": {"properties": {"aggregation": {"const": "count"}}},
     "then": {"not": {"required": ["property"]}},
     "else": {"required": ["property"], "properties": {"property": {"minLength": 1}}}},
    {"if": {"properties": {"keep_values": {"const": True}}, "required": ["keep_values"]},
     "then": {"properties": {"aggregation": {"const": "sum"}}}},
]}


class MeterIn(Strict):
    model_config = ConfigDict(json_schema_extra=_with(METER_TERMS))
    event_type: str = Field(min_length=1, max_length=128, examples=["llm.completion"],
                            description="printable, no space at either end: the type of the events it counts")
    aggregation: Literal["count", "sum", "max", "min", "unique_count", "latest"]
    property: str | None = Field(default=None, examples=["output_tokens"])
    filter: dict[Annotated[str, Field(min_length=1)], Annotated[list[str | int | bool], Field(min_length=1)]] | None = (
        Field(default=None, description="property name -> the values an event's property must have to count"))
    group_by: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, max_length=5, json_schema_extra={"uniqueItems": True})
    name: str | None = None
    unit: str | None = None
    keep_values: bool = Field(default=False, description=(
        "sum meters only: also keep each event's exact value, which percentage charges with "
        "per_event_min / per_event_max need (free events use them too); "
        "cannot change once the meter exists"))


class TierIn(Strict):
    NULLABLE = frozenset({"up_to"})
    up_to: str | None = Field(pattern=r"^\d+(\.\d+)?$")
    unit_amount: str = Amount
    flat_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")


class RateTierIn(Strict):
    """A graduated_percentage tier: a percent of the part of the summed amount in the tier."""
    NULLABLE = frozenset({"up_to"})
    up_to: str | None = Field(pattern=r"^\d+(\.\d+)?$")
    rate: str = Field(pattern=r"^\d+(\.\d+)?$", description="percent: \"2.9\" means 2.9 %")
    flat_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")


class ChargeIn(Strict):
    # extra model-specific properties are allowed; each charge model validates its own
    model_config = ConfigDict(extra="allow")
    meter: str = Field(pattern=CODE_PATTERN, description="the code of a meter")
    model: str = Field(examples=["graduated"])
    display_name: str | None = None
    unit_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    tiers: list[TierIn] | list[RateTierIn] | None = Field(
        default=None, description="graduated / volume: unit_amount per tier; graduated_percentage: rate per tier")
    free_units: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    min_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    unit: str | None = None


class PlanIn(Strict):
    currency: str = Field(min_length=3, max_length=3, examples=["USD"], description="ISO 4217",
                          json_schema_extra={"enum": sorted(MINOR_UNITS)})
    interval: Literal["hour", "day", "week", "month", "quarter", "year"] = "month"
    base_fee: str = Field(default="0", pattern=r"^\d+(\.\d+)?$")
    base_fee_timing: Literal["arrears", "advance"] = "arrears"
    tax_inclusive: bool = False
    rounding: Literal["half_up", "half_even", "half_down", "up", "down"] = Field(
        default="half_up", description="how each invoice line is rounded to the currency's minor unit")
    minimum_commitment: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    name: str | None = None
    charges: list[ChargeIn] = []


class AddressIn(Strict):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = Field(default=None, pattern=COUNTRY, description="ISO 3166-1 alpha-2")


class CustomerIn(Strict):
    name: str = Field(pattern=NOT_BLANK, description="legal or display name")
    email: str | None = Field(default=None, pattern="@", max_length=254)
    plan: str = Field(pattern=CODE_PATTERN, description="the code of a plan")
    started_at: str | None = instant("when billing starts (RFC 3339), default now")
    billing_anchor: str | None = instant("where periods start (RFC 3339), default started_at")
    timezone: str = "UTC"
    payment_terms_days: int = Field(default=30, ge=0, le=365,
                                    description="days after an invoice is committed until it is due (send_invoice)")
    collection_method: Literal["charge_automatically", "send_invoice"] | None = Field(
        default=None, description="how invoices are collected (copied onto each invoice at commit); "
                                  "default from the deployment's METERBILL_COLLECTION_METHOD")
    address: AddressIn | None = None
    metadata: dict[str, str] | None = None
    tax_exempt: bool | None = None
    tax_id: str | None = Field(default=None, min_length=2, max_length=32,
                               description="tax registration (e.g. EU VAT) number")
    invoice_grace_hours: int | None = Field(default=None, ge=0, le=720,
                                            description="hours an ended period's invoice stays a draft "
                                                        "(late events still land on it); default from settings")
    progressive_threshold: str | None = Field(
        default=None, pattern=r"^\d+(\.\d+)?$",
        description="progressive billing: invoice early whenever the period's usage charges not yet invoiced "
                    "reach this amount; the period's invoice nets what was already invoiced")
    price_overrides: dict[str, Any] | None = Field(
        default=None, description="contract terms on top of the plan: base_fee, minimum_commitment, "
                                  "base_fee_timing, and charges keyed by meter code (fields merged into the "
                                  "plan's charge); kept on the same plan when omitted, dropped by a plan change",
        examples=[{"charges": {"tokens": {"unit_amount": "0.0015"}}}])
    plan_effective_at: str | None = instant("with a different plan or price_overrides: when the change takes effect "
                                            "(RFC 3339, default now), moved to the next 15-minute usage-bucket "
                                            "boundary")
    backdate: bool | None = Field(default=None, description="confirms a new started_at more than 92 days ago")
    tags: dict[str, str] | None = Field(default=None, description="segment labels the reports group by "
                                        "(group_by=tag:<key>): at most 10, keys [a-z][a-z0-9_]{0,31}, values 1-64 "
                                        "characters", examples=[{"segment": "enterprise", "region": "eu"}])


class BillingRunIn(Strict):
    as_of: str | None = instant("close periods that ended at or before this instant; default now")


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


class InvoiceActionIn(Strict):
    reference: str | None = Field(default=None, max_length=200,
                                  description="payment reference, reason for voiding, collection case…")
    at: str | None = instant("when it happened (default now), RFC 3339")


class TaxRateIn(Strict):
    name: str = Field(pattern=NOT_BLANK, examples=["VAT 19%"])
    percentage: str = Field(pattern=r"^\d+(\.\d+)?$", examples=["19"])
    country: str = Field(pattern=COUNTRY, examples=["DE"], description="ISO 3166-1 alpha-2")
    state: str | None = Field(default=None, min_length=1,
                              description="state / province code, where taxes differ below country")


class SimulationIn(Strict):
    plan: PlanIn = Field(description="the candidate plan (not stored)")
    customers: list[str] | None = Field(default=None, max_length=100, json_schema_extra={"uniqueItems": True},
                                        description="default: the first 100 customers; each at most once")
    periods: int = Field(default=3, ge=1, le=24, description="how many of each customer's last invoiced periods")

    @field_validator("customers")
    @classmethod
    def _each_once(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            twice = next(c for c in value if value.count(c) > 1)
            raise ValueError(f"lists '{twice}' more than once")
        return value


# The terms that go together, as the domain checks them (adjustments.parse_discount).
DISCOUNT_TERMS = {"allOf": [
    {"if": {"properties": {"type": {"const": "percentage"}}}, "then": {"required": ["percentage"]},
     "else": {"required": ["amount"]}},
    {"if": {"properties": {"duration": {"const": "repeating"}}, "required": ["duration"]},
     "then": {"required": ["periods"]}, "else": {"not": {"required": ["periods"]}}},
]}


class DiscountIn(Strict):
    model_config = ConfigDict(json_schema_extra=_with(DISCOUNT_TERMS))
    type: Literal["percentage", "fixed"]
    percentage: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$", examples=["20"])
    amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$", description="fixed discounts, in the customer's currency")
    duration: Literal["once", "repeating", "forever"] = "once"
    periods: int | None = Field(default=None, ge=1, le=1200, description="repeating: how many billing periods")
    meter: str | None = Field(default=None, pattern=CODE_PATTERN,
                              description="only this meter's charge; default the whole invoice")
    name: str | None = Field(default=None, max_length=200)


class GrantIn(Strict):
    amount: str = Field(pattern=r"^\d+(\.\d+)?$", examples=["500.00"])
    expires_at: str | None = instant("RFC 3339; default never")
    reason: str | None = Field(default=None, max_length=200)


class CreditNoteLineIn(Strict):
    line: int = Field(ge=0, description="index of the invoice line credited")
    amount: str = Field(pattern=r"^\d+(\.\d+)?$")


class CreditNoteIn(Strict):
    invoice: str = Field(min_length=1, description="id of a final, paid or uncollectible invoice")
    reason: Literal["duplicate", "fraudulent", "order_change", "product_unsatisfactory", "other"] = "other"
    amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$",
                               description="before tax (tax-inclusive if the invoice's prices were); or give lines")
    lines: list[CreditNoteLineIn] | None = None
    memo: str | None = Field(default=None, max_length=500)
    idempotency_key: str | None = Field(default=None, max_length=200,
                                        description="a retried request with the same key returns the same note")


class EraseIn(Strict):
    reason: str | None = Field(default=None, max_length=500,
                               description="why (e.g. the data subject's request reference); kept in the audit entry")
