"""Request bodies (pydantic): they shape the OpenAPI document and reject wrong JSON types early.
Amounts are decimal strings; deep rules (tiers ascending, currency known…) live in the domain."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Amount = Field(pattern=r"^-?\d+(\.\d+)?$", description="decimal string, e.g. \"12.34\"")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeterIn(Strict):
    event_type: str = Field(min_length=1, max_length=128, examples=["llm.completion"])
    aggregation: Literal["count", "sum", "max", "min", "unique_count", "latest"]
    property: str | None = Field(default=None, examples=["output_tokens"])
    filter: dict[str, list[str | int | bool]] | None = None
    group_by: list[str] | None = None
    name: str | None = None
    unit: str | None = None
    keep_values: bool = Field(default=False, description=(
        "sum meters only: also keep each event's exact value, which percentage charges with "
        "per_event_min / per_event_max need (free events use them too); "
        "cannot change once the meter exists"))


class TierIn(Strict):
    up_to: str | None = Field(pattern=r"^\d+(\.\d+)?$")
    unit_amount: str = Amount
    flat_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")


class RateTierIn(Strict):
    """A graduated_percentage tier: a percent of the part of the summed amount in the tier."""
    up_to: str | None = Field(pattern=r"^\d+(\.\d+)?$")
    rate: str = Field(pattern=r"^\d+(\.\d+)?$", description="percent: \"2.9\" means 2.9 %")
    flat_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")


class ChargeIn(BaseModel):
    # extra model-specific properties are allowed; each charge model validates its own
    model_config = ConfigDict(extra="allow")
    meter: str
    model: str = Field(examples=["graduated"])
    display_name: str | None = None
    unit_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    tiers: list[TierIn] | list[RateTierIn] | None = Field(
        default=None, description="graduated / volume: unit_amount per tier; graduated_percentage: rate per tier")
    free_units: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    min_amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    unit: str | None = None


class PlanIn(Strict):
    currency: str = Field(min_length=3, max_length=3, examples=["USD"])
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
    country: str | None = Field(default=None, min_length=2, max_length=2)


class CustomerIn(Strict):
    name: str = Field(min_length=1)
    email: str | None = None
    plan: str
    started_at: str | None = None
    billing_anchor: str | None = None
    timezone: str = "UTC"
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    address: AddressIn | None = None
    metadata: dict[str, str] | None = None
    tax_exempt: bool | None = None
    tax_id: str | None = Field(default=None, description="tax registration (e.g. EU VAT) number")
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
        examples=[{"charges": {"api_calls": {"unit_amount": "0.0015"}}}])
    plan_effective_at: str | None = Field(
        default=None, description="with a different plan or price_overrides: when the change takes effect "
                                  "(RFC 3339, default now), moved to the next 15-minute usage-bucket boundary")
    backdate: bool | None = Field(default=None, description="confirms a new started_at more than 92 days ago")


class BillingRunIn(Strict):
    as_of: str | None = Field(default=None, description="close periods that ended at or before this instant; default now")


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


class InvoiceActionIn(Strict):
    reference: str | None = Field(default=None, max_length=200,
                                  description="payment reference, reason for voiding, collection case…")
    at: str | None = Field(default=None, description="when it happened (default now), RFC 3339")


class TaxRateIn(Strict):
    name: str = Field(min_length=1, examples=["VAT 19%"])
    percentage: str = Field(pattern=r"^\d+(\.\d+)?$", examples=["19"])
    country: str = Field(min_length=2, max_length=2, examples=["DE"])
    state: str | None = Field(default=None, description="state / province code, where taxes differ below country")


class SimulationIn(Strict):
    plan: PlanIn = Field(description="the candidate plan (not stored)")
    customers: list[str] | None = Field(default=None, max_length=100, description="default: the first 100 customers")
    periods: int = Field(default=3, ge=1, le=24, description="how many of each customer's last invoiced periods")


class DiscountIn(Strict):
    type: Literal["percentage", "fixed"]
    percentage: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$", examples=["20"])
    amount: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$", description="fixed discounts, in the customer's currency")
    duration: Literal["once", "repeating", "forever"] = "once"
    periods: int | None = Field(default=None, ge=1, le=1200, description="repeating: how many billing periods")
    meter: str | None = Field(default=None, description="only this meter's charge; default the whole invoice")
    name: str | None = Field(default=None, max_length=200)


class GrantIn(Strict):
    amount: str = Field(pattern=r"^\d+(\.\d+)?$", examples=["500.00"])
    expires_at: str | None = Field(default=None, description="RFC 3339; default never")
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
