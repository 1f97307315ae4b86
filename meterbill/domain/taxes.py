"""Taxes (pure): which rate applies to a customer, exemptions, EU reverse charge, tax-inclusive
or exclusive prices. Tax is computed once on the invoice subtotal and rounded once, so
subtotal + tax = total exactly (exclusive) or the tax is the part of the total it contains
(inclusive)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from meterbill.domain.errors import InvalidField
from meterbill.domain.meters import check_code
from meterbill.domain import limits
from meterbill.domain.money import CONTEXT, PERCENT, format_amount, parse_amount, parse_decimal, quantize

EU = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
REVERSE_CHARGE_NOTE = ("Reverse charge: VAT to be accounted for by the recipient "
                       "(Article 196, Council Directive 2006/112/EC).")
EXEMPT_NOTE = "The customer is exempt from tax; no tax charged."
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class TaxRate:
    code: str
    name: str
    percentage: Decimal          # 19 means 19 %
    country: str                 # ISO 3166-1 alpha-2
    state: str | None = None     # state / province code where taxes differ below country level


@dataclass(frozen=True, slots=True)
class TaxParty:
    country: str | None
    state: str | None = None
    exempt: bool = False
    tax_id: str | None = None    # e.g. an EU VAT number: makes a cross-border EU sale reverse charge


@dataclass(frozen=True, slots=True)
class TaxLine:
    name: str
    percentage: Decimal
    taxable: Decimal
    amount: Decimal              # rounded once
    note: str | None = None


def parse_tax_rate(code: str, raw: Mapping[str, Any]) -> TaxRate:
    check_code(code)
    name = raw.get("name")
    if type(name) is not str or not name.strip():
        raise InvalidField("name", "is required: the name printed on invoices, e.g. \"VAT 19%\"")
    percentage = parse_decimal(raw.get("percentage"), "percentage")
    if percentage > HUNDRED:
        raise InvalidField("percentage", "must be at most 100")
    country = raw.get("country")
    if type(country) is not str or len(country) != 2 or not country.isalpha() or not country.isupper():
        raise InvalidField("country", "is required: an ISO 3166-1 alpha-2 code such as \"DE\"")
    state = raw.get("state")
    if state is not None and (type(state) is not str or not state):
        raise InvalidField("state", "must be a state or province code such as \"CA\"")
    return TaxRate(code, name, percentage, country, state)


def check_tax_rate_input(raw: Mapping[str, Any]) -> None:
    """What a client may save beyond what :func:`parse_tax_rate` reads: the percentage grammar
    (at most 6 decimals) and the name's length."""
    parse_amount(raw.get("percentage"), "percentage", PERCENT)
    limits.check_text(raw.get("name"), "name", limits.MAX_NAME)
    limits.check_text(raw.get("state"), "state", 10)


def choose_rate(rates: Iterable[TaxRate], party: TaxParty) -> TaxRate | None:
    """The most specific rate for the customer's place: state first, then country."""
    country_level = None
    for rate in rates:
        if rate.country != party.country:
            continue
        if rate.state is not None and rate.state == party.state:
            return rate
        if rate.state is None:
            country_level = rate
    return country_level


def tax_lines(subtotal: Decimal, currency: str, rates: Iterable[TaxRate], customer: TaxParty,
              seller_country: str | None, inclusive: bool, rounding: str = ROUND_HALF_UP) -> list[TaxLine]:
    if customer.exempt:
        return [TaxLine("Tax exempt", Decimal(0), subtotal, quantize(Decimal(0), currency), EXEMPT_NOTE)]
    if (customer.tax_id and seller_country in EU and customer.country in EU
            and customer.country != seller_country):
        return [TaxLine("VAT reverse charge", Decimal(0), subtotal, quantize(Decimal(0), currency),
                        REVERSE_CHARGE_NOTE)]
    rate = choose_rate(rates, customer)
    if rate is None:
        return []
    p = rate.percentage
    taxed = CONTEXT.multiply(subtotal, p)  # exact: a plain * rounds to 28 digits
    raw = CONTEXT.divide(taxed, HUNDRED + p) if inclusive else CONTEXT.divide(taxed, HUNDRED)
    amount = quantize(raw, currency, rounding)
    taxable = subtotal - amount if inclusive else subtotal
    note = "Prices include tax." if inclusive else None
    return [TaxLine(rate.name, p, taxable, amount, note)]


def total_with(subtotal: Decimal, lines: Iterable[TaxLine], inclusive: bool) -> Decimal:
    return subtotal if inclusive else subtotal + sum((t.amount for t in lines), Decimal(0))


def tax_docs(lines: Iterable[TaxLine], currency: str) -> list[dict[str, Any]]:
    return [{"name": t.name, "percentage": format(t.percentage, "f"),
             "rate": format(CONTEXT.divide(t.percentage, HUNDRED).normalize(), "f"),
             "taxable_amount": format_amount(t.taxable, currency), "amount": format_amount(t.amount, currency),
             **({"note": t.note} if t.note else {})} for t in lines]
