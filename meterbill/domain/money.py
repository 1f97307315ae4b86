"""Money: ISO 4217 minor units, the one rounding function, strict decimal parsing.

Money is always :class:`~decimal.Decimal`, never ``float``. Arithmetic that must not
depend on the process-wide decimal context uses :data:`CONTEXT` explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    "ROUNDING_MODES",
    "format_amount",
    "minor_units",
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
