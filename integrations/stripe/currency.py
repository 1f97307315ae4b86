"""Stripe's currency table: how many minor units an API amount counts, and Stripe's extra rules.

Stripe takes integer amounts in the currency's smallest unit (docs.stripe.com/currencies), which is
not always ISO 4217's:
- zero-decimal currencies are not x100 (JPY 500 is ``500``); MGA is zero-decimal in Stripe though
  ISO gives it 2 decimals;
- ISK stays two-decimal in the API but only whole krónur are accepted (amounts divisible by 100);
- three-decimal currencies (BHD, JOD, KWD, OMR, TND) count thousandths, but a charged amount must end
  in 0 ("round to the nearest ten"): meterbill never rounds a billed amount for Stripe, it refuses
  the invoice (``validate_invoice``) so the two systems cannot differ;
- everything else Stripe supports is two-decimal. Currencies Stripe does not take at all (ISO 4217
  funds codes, the 4-decimal CLF/UYW, IQD/LYD) are refused.
"""

from __future__ import annotations

from decimal import Decimal

ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
WHOLE_UNITS_ONLY = frozenset({"ISK"})          # two-decimal in the API, amounts divisible by 100
UNSUPPORTED = frozenset("BOV CHE CHW CLF COU IQD LYD MXV USN UYI UYW XAD XCG VED ZWG".split())


def exponent(currency: str) -> int:
    """Stripe's number of decimals in an API amount of ``currency`` (upper-case ISO code)."""
    if currency in UNSUPPORTED:
        raise ValueError(f"Stripe does not take amounts in {currency}")
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def to_minor(amount: Decimal | str, currency: str) -> int:
    """Exact integer amount for the Stripe API: ``Decimal("12.34")`` USD → 1234, JPY ``500`` → 500,
    KWD ``5.120`` → 5120. Raises ValueError when Stripe cannot represent the amount exactly (more
    decimals than Stripe's exponent, a fractional króna, a thousandth of a dinar not ending in 0)."""
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite amount")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} {currency} has more decimals than Stripe's {exponent(currency)}")
    units = int(scaled)
    if currency in WHOLE_UNITS_ONLY and units % 100:
        raise ValueError(f"{value} {currency}: Stripe accepts whole {currency} only")
    return units


def charge_problem(amount: Decimal | str, currency: str) -> str | None:
    """Why Stripe would refuse to *charge* ``amount`` (three-decimal currencies: last digit 0)."""
    if currency in THREE_DECIMAL and to_minor(amount, currency) % 10:
        return (f"{Decimal(amount)} {currency} cannot be charged through Stripe: amounts in three-decimal "
                f"currencies must be a multiple of 0.010 {currency}")
    return None


def from_minor(units: int, currency: str) -> Decimal:
    """Stripe's integer amount back to a Decimal in major units (1234 USD → 12.34)."""
    return Decimal(units).scaleb(-exponent(currency))
