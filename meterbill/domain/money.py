"""Money: ISO 4217 minor units, the one rounding function, strict decimal parsing.

Money is always :class:`~decimal.Decimal`, never ``float``. Arithmetic that must not
depend on the process-wide decimal context uses :data:`CONTEXT` explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from types import MappingProxyType

from meterbill.domain.errors import InvalidField, UnknownCurrency

__all__ = [
    "CONTEXT",
    "MINOR_UNITS",
    "MONEY",
    "PERCENT",
    "PRICE_DIGITS",
    "QUANTITY",
    "ROUNDING_MODES",
    "UNIT_PRICE",
    "AmountRule",
    "check_amount",
    "decimals",
    "format_amount",
    "integer_digits",
    "minor_units",
    "parse_amount",
    "parse_decimal",
    "quantize",
    "to_minor",
]

#: The decimal context for all money arithmetic: 38 significant digits (like SQL
#: DECIMAL(38)), banker's rounding for the (practically unreachable) inexact case, and
#: traps on the signals that would otherwise yield NaN/Infinity.
CONTEXT = Context(
    prec=38,
    rounding=ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

# ISO 4217 "List one" (SIX, published 2026-01-01): every active alphabetic code whose
# minor unit is a number. Codes whose minor unit is "N.A." (XAU, XAG, XPD, XPT, XDR,
# XBA-XBD, XSU, XUA, XTS, XXX) cannot express an invoice amount and are left out.
_CODES_BY_EXPONENT: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN"
        " BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP"
        " ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR"
        " IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT"
        " MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP"
        " PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC"
        " SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XAD"
        " XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {
        code: exponent
        for exponent, codes in sorted(_CODES_BY_EXPONENT.items())
        for code in codes.split()
    }
)

# One quantum per currency, built once: Decimal("1"), Decimal("0.01"), ...
_QUANTUM: dict[str, Decimal] = {code: Decimal(1).scaleb(-exp) for code, exp in MINOR_UNITS.items()}

#: A plan's ``rounding`` -> the decimal rounding constant (``up``/``down``: away from / towards zero).
ROUNDING_MODES: Mapping[str, str] = MappingProxyType({
    "half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "half_down": ROUND_HALF_DOWN,
    "up": ROUND_UP, "down": ROUND_DOWN})

_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_MAX_DECIMAL_CHARS = 64
_EXAMPLE = 'must be a decimal string such as "12.34"'


def minor_units(currency: str) -> int:
    """The ISO 4217 exponent of ``currency`` (2 for USD, 0 for JPY, 3 for KWD)."""
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(
            "currency", f"{currency!r} is not an ISO 4217 currency code"
        ) from None


def quantize(amount: Decimal, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round ``amount`` to the currency's minor unit. THE one rounding function.

    Half-up by default (0.005 USD -> 0.01; -0.005 -> -0.01, i.e. away from zero).
    A negative zero result is normalised to positive zero.
    """
    try:
        quantum = _QUANTUM[currency]
    except (KeyError, TypeError):
        minor_units(currency)  # raises UnknownCurrency with the standard message
        raise AssertionError("unreachable") from None  # pragma: no cover
    result = amount.quantize(quantum, rounding, CONTEXT)
    if not result and result.is_signed():
        result = result.copy_abs()
    return result


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact integer count of minor units (``Decimal("12.30")``, USD -> 1230).

    Raises :class:`ValueError` when ``amount`` has more precision than the currency's
    minor unit (quantize first) or is not finite.
    """
    exponent = minor_units(currency)
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"{amount!r} is not a finite Decimal amount")
    # Pure integer arithmetic: exact whatever the number of digits.
    sign, digits, exp = amount.as_tuple()
    coefficient = int("".join(map(str, digits)))
    shift = int(exp) + exponent
    units: int
    if shift >= 0:
        units = coefficient * 10**shift
    else:
        units, remainder = divmod(coefficient, 10**-shift)
        if remainder:
            raise ValueError(
                f"{amount} has more than {exponent} decimal places for {currency}; "
                "quantize it first"
            )
    return -units if sign else units


def parse_decimal(
    value: object, field: str, *, allow_negative: bool = False
) -> Decimal:
    """Parse a client-supplied amount strictly, raising :class:`InvalidField`.

    Accepts a plain decimal string (optional sign, digits, optional ``.digits``;
    no exponent, whitespace or separators, at most 64 characters), an ``int`` (not
    ``bool``) or a finite :class:`Decimal`. Rejects ``float`` (JSON numbers with a
    fraction lose precision before we ever see them), NaN/Infinity and empty
    strings; rejects negative values unless ``allow_negative``. ``-0`` becomes ``0``.
    """
    if isinstance(value, bool):
        raise InvalidField(field, f"{_EXAMPLE}, not a boolean")
    if isinstance(value, float):
        raise InvalidField(field, f"{_EXAMPLE}, not a JSON float")
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidField(field, "must be a finite number")
        result = value
    elif isinstance(value, str):
        if not value:
            raise InvalidField(field, f"{_EXAMPLE}, not an empty string")
        if len(value) > _MAX_DECIMAL_CHARS or not _PLAIN_DECIMAL.fullmatch(value):
            raise InvalidField(
                field,
                f"{_EXAMPLE} (digits with an optional sign and fraction; "
                "no exponent, spaces or separators)",
            )
        result = Decimal(value)
    else:
        raise InvalidField(field, _EXAMPLE)
    if result.is_zero():
        return result.copy_abs()
    if result < 0 and not allow_negative:
        raise InvalidField(field, "must not be negative")
    return result


def format_amount(amount: Decimal, currency: str) -> str:
    """Quantized plain string: ``"12.30"``, ``"1500"`` (JPY); never an exponent."""
    return format(quantize(amount, currency), "f")


# -- the amount grammar ------------------------------------------------------------------------
# One grammar for every amount a client stores (docs/decisions.md, "Input limits and the amount
# grammar", 2026-12-01): a plain decimal (``parse_decimal``), a sign only where a field allows it,
# at most ``integer_digits`` digits before the point and at most ``decimals`` after it (trailing
# zeros do not count; ``None``: the currency's minor unit). The bounds keep every computation of a
# billing run exact in :data:`CONTEXT` (38 digits) for usage within ingest's numeric range
# (|x| < 10^16, <= 10 decimals):
#   quantity (26 digits) x price (<= PRICE_DIGITS = 11 digits across one charge) + flat fees
#   <= 38 digits; a usage line is below ~1.000001 x 10^21, so an invoice total below 10^24 (about
#   500 such lines) sums exactly in 28 digits (the default context plain ``+`` uses) even at 4
#   decimals; tax and percentage discounts (<= 100, <= 6 decimals) on it need <= 38.
# They are checked when a client saves an amount; values stored earlier are read as they are.


@dataclass(frozen=True, slots=True)
class AmountRule:
    """One kind of amount: ``|value| < 10 ** integer_digits``, at most ``decimals`` decimals."""

    noun: str                  # "an amount", "a unit price", ... (for messages)
    integer_digits: int
    decimals: int | None       # None: the currency's minor unit
    signed: bool = False       # negative values allowed


#: Fixed amounts charged or credited as they are: base fees, minimum commitments, charge minimums,
#: tier flat fees, fixed discounts, credit grants, credit notes, progressive thresholds.
MONEY = AmountRule("an amount", 12, None)
#: Prices per unit, package or event: tier / matrix / time-of-use unit amounts, package amounts,
#: a percentage charge's fixed fee and per-event minimum / maximum.
UNIT_PRICE = AmountRule("a unit price", 5, 11)
#: Usage quantities in a plan (tier bounds, free units, package sizes): ingest's numeric range.
QUANTITY = AmountRule("a quantity", 16, 10)
#: Percentages: a percentage charge's rate, tax rates, percentage discounts (20 = 20 %).
PERCENT = AmountRule("a percentage", 3, 6)
#: The unit prices of one charge together (a percentage rate counted as rate / 100): digits before
#: the point of the largest plus decimals of the most precise (0.000000075 and 15: 2 + 9 = 11).
PRICE_DIGITS = 11


def integer_digits(value: Decimal) -> int:
    """Digits before the decimal point (0 for |value| < 1)."""
    return max(value.adjusted() + 1, 0) if value else 0


def decimals(value: Decimal) -> int:
    """Digits after the decimal point, trailing zeros not counted (``"1.50"`` -> 1)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or not value:
        return 0
    zeros = 0
    for digit in reversed(digits):
        if digit:
            break
        zeros += 1
    return max(-exponent - zeros, 0)


def check_amount(value: Decimal, field: str, rule: AmountRule, currency: str | None = None) -> Decimal:
    """``value`` if it follows ``rule`` (its currency's minor unit for ``decimals=None``), else
    :class:`InvalidField` at ``field`` saying which bound it exceeds."""
    if value < 0 and not rule.signed:
        raise InvalidField(field, "must not be negative", "amount_out_of_range")
    if integer_digits(value) > rule.integer_digits:
        raise InvalidField(field, f"has {integer_digits(value)} digits before the decimal point; "
                                  f"{rule.noun} has at most {rule.integer_digits} "
                                  f"(below {10 ** rule.integer_digits})", "amount_out_of_range")
    places = rule.decimals
    where = ""
    if places is None:
        if currency is None:
            raise ValueError(f"{rule.noun} needs a currency")  # a caller's bug, never a client's
        places, where = minor_units(currency), f" in {currency}"
    if decimals(value) > places:
        raise InvalidField(field, f"has {decimals(value)} decimals; {rule.noun}{where} has at most {places}",
                           "amount_out_of_range")
    return value


def parse_amount(value: object, field: str, rule: AmountRule, currency: str | None = None) -> Decimal:
    """A client's amount: :func:`parse_decimal` (a plain decimal string or an integer), then
    :func:`check_amount`."""
    return check_amount(parse_decimal(value, field, allow_negative=rule.signed), field, rule, currency)
