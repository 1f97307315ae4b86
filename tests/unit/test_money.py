"""meterbill.domain.money: minor units, the one rounding function, strict parsing."""

from __future__ import annotations

import decimal
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbill.domain.errors import InvalidField, UnknownCurrency
from meterbill.domain.money import (
    MINOR_UNITS,
    format_amount,
    minor_units,
    parse_decimal,
    quantize,
    to_minor,
)

D = Decimal
FLOAT_PROBLEM = 'must be a decimal string such as "12.34", not a JSON float'


# --- ISO 4217 minor units ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("INR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("ISK", 0),
        ("VND", 0),
        ("XOF", 0),
        ("XAF", 0),
        ("CLP", 0),
        ("PYG", 0),
        ("UGX", 0),
        ("RWF", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("JOD", 3),
        ("OMR", 3),
        ("TND", 3),
        ("LYD", 3),
        ("IQD", 3),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_minor_units_of_known_currencies(code: str, exponent: int) -> None:
    assert minor_units(code) == exponent
    assert MINOR_UNITS[code] == exponent


def test_minor_units_table_is_complete_and_well_formed() -> None:
    assert len(MINOR_UNITS) >= 150
    assert set(MINOR_UNITS.values()) == {0, 2, 3, 4}
    for code in MINOR_UNITS:
        assert len(code) == 3 and code.isascii() and code.isupper()
    # recent additions to ISO 4217 list one
    for code in ("SLE", "VED", "ZWG", "XCG"):
        assert code in MINOR_UNITS
    # withdrawn codes and codes without a minor unit are not billable currencies
    for code in ("HRK", "ZWL", "XAU", "XXX", "XTS", "XDR"):
        assert code not in MINOR_UNITS


def test_minor_units_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        MINOR_UNITS["ABC"] = 2  # type: ignore[index]


@pytest.mark.parametrize("code", ["XYZ", "usd", "", "US", "USDX", None, 840])
def test_unknown_currency(code: object) -> None:
    with pytest.raises(UnknownCurrency) as info:
        minor_units(code)  # type: ignore[arg-type]
    assert info.value.field == "currency"
    assert info.value.problem == f"{code!r} is not an ISO 4217 currency code"
    assert info.value.code == "unknown_currency"
    assert isinstance(info.value, InvalidField)


def test_unknown_currency_message_matches_the_contract() -> None:
    with pytest.raises(UnknownCurrency) as info:
        quantize(D("1"), "XYZ")
    assert info.value.problem == "'XYZ' is not an ISO 4217 currency code"


# --- quantize ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("12.345", "USD", "12.35"),  # half-up, not banker's
        ("12.335", "USD", "12.34"),
        ("12.3449999", "USD", "12.34"),
        ("-12.345", "USD", "-12.35"),  # half away from zero
        ("0.005", "USD", "0.01"),
        ("0.004", "USD", "0.00"),
        ("-0.004", "USD", "0.00"),  # no negative zero
        ("1499.5", "JPY", "1500"),
        ("1499.4", "JPY", "1499"),
        ("1.2345", "KWD", "1.235"),
        ("1.23455", "CLF", "1.2346"),
        ("12", "USD", "12.00"),
        ("1E+3", "JPY", "1000"),
    ],
)
def test_quantize(amount: str, currency: str, expected: str) -> None:
    result = quantize(D(amount), currency)
    assert str(result) == expected
    assert result.as_tuple().exponent == -minor_units(currency)


def test_quantize_with_other_rounding_modes() -> None:
    assert quantize(D("0.125"), "USD", ROUND_HALF_EVEN) == D("0.12")
    assert quantize(D("0.129"), "USD", ROUND_DOWN) == D("0.12")


def test_quantize_ignores_the_global_decimal_context() -> None:
    big = D("123456789012345678901234567.895")
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_DOWN
        assert quantize(big, "USD") == D("123456789012345678901234567.90")
        assert format_amount(D("1234567.891"), "USD") == "1234567.89"


@given(
    st.decimals(min_value=-(10**15), max_value=10**15, places=6),
    st.sampled_from(["USD", "JPY", "KWD", "CLF"]),
)
def test_quantize_is_idempotent_and_within_half_a_minor_unit(
    amount: Decimal, currency: str
) -> None:
    q = quantize(amount, currency)
    assert quantize(q, currency) == q
    assert abs(q - amount) <= D(1).scaleb(-minor_units(currency)) / 2


# --- to_minor ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("12.30", "USD", 1230),
        ("12.3", "USD", 1230),  # value-exact is enough
        ("-0.01", "USD", -1),
        ("0", "USD", 0),
        ("1500", "JPY", 1500),
        ("1E+3", "JPY", 1000),
        ("1.234", "KWD", 1234),
        (
            "123456789012345678901234567890123456789.12",
            "USD",
            12345678901234567890123456789012345678912,
        ),
    ],
)
def test_to_minor(amount: str, currency: str, expected: int) -> None:
    assert to_minor(D(amount), currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency"), [("12.345", "USD"), ("0.5", "JPY"), ("1.2345", "KWD")]
)
def test_to_minor_rejects_unquantized_amounts(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match="quantize"):
        to_minor(D(amount), currency)


@pytest.mark.parametrize("amount", [D("NaN"), D("Infinity"), 1.5])
def test_to_minor_rejects_non_finite_and_non_decimal(amount: object) -> None:
    with pytest.raises(ValueError):
        to_minor(amount, "USD")  # type: ignore[arg-type]


@given(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["USD", "JPY", "KWD", "UYW"]),
)
def test_to_minor_round_trips(n: int, currency: str) -> None:
    amount = D(n).scaleb(-minor_units(currency))
    assert to_minor(amount, currency) == n
    assert to_minor(quantize(amount, currency), currency) == n


# --- parse_decimal -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.34", D("12.34")),
        ("0", D("0")),
        ("+7", D("7")),
        ("0.00000001", D("0.00000001")),
        ("1000", D("1000")),
        ("007.50", D("7.50")),
        ("-0", D("0")),
        (12, D("12")),
        (0, D("0")),
        (D("3.5"), D("3.5")),
    ],
)
def test_parse_decimal_accepts(raw: object, expected: Decimal) -> None:
    result = parse_decimal(raw, "charges[0].unit_amount")
    assert result == expected
    assert isinstance(result, Decimal)
    assert not result.is_signed() or result != 0


def test_parse_decimal_keeps_the_written_scale() -> None:
    assert str(parse_decimal("12.30", "x")) == "12.30"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (12.34, FLOAT_PROBLEM),
        (0.0, FLOAT_PROBLEM),
        (float("nan"), FLOAT_PROBLEM),
        (True, 'must be a decimal string such as "12.34", not a boolean'),
        ("", 'must be a decimal string such as "12.34", not an empty string'),
        (None, 'must be a decimal string such as "12.34"'),
        ([1], 'must be a decimal string such as "12.34"'),
        (D("NaN"), "must be a finite number"),
        (D("Infinity"), "must be a finite number"),
    ],
)
def test_parse_decimal_rejects_with_problem(raw: object, problem: str) -> None:
    with pytest.raises(InvalidField) as info:
        parse_decimal(raw, "plan.charges[2].tiers[0].unit_amount")
    assert info.value.field == "plan.charges[2].tiers[0].unit_amount"
    assert info.value.problem == problem


@pytest.mark.parametrize(
    "raw",
    [
        "1e3",
        "1E-2",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        " 12",
        "12 ",
        "1,000",
        "1_000",
        "12.",
        ".5",
        "0x10",
        "١٢",
        "--1",
        "1.2.3",
        "9" * 65,
    ],
)
def test_parse_decimal_rejects_non_plain_strings(raw: str) -> None:
    with pytest.raises(InvalidField) as info:
        parse_decimal(raw, "amount")
    assert info.value.field == "amount"
    assert "no exponent" in info.value.problem


@pytest.mark.parametrize("raw", ["-1", "-0.01", -5, D("-2")])
def test_parse_decimal_negative(raw: object) -> None:
    with pytest.raises(InvalidField) as info:
        parse_decimal(raw, "amount")
    assert info.value.problem == "must not be negative"
    assert parse_decimal(raw, "amount", allow_negative=True) < 0


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, min_value=0, max_value=10**12, places=4
    )
)
def test_parse_decimal_round_trips_plain_strings(value: Decimal) -> None:
    assert parse_decimal(format(value, "f"), "x") == value


# --- format_amount -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("12.3", "USD", "12.30"),
        ("1500", "JPY", "1500"),
        ("1.5E+3", "JPY", "1500"),
        ("1E+12", "USD", "1000000000000.00"),
        ("0.000001", "USD", "0.00"),
        ("-0.001", "USD", "0.00"),
        ("-1.005", "USD", "-1.01"),
        ("2.5", "KWD", "2.500"),
    ],
)
def test_format_amount(amount: str, currency: str, expected: str) -> None:
    assert format_amount(D(amount), currency) == expected


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, min_value=-(10**18), max_value=10**18
    ),
    st.sampled_from(sorted(MINOR_UNITS)),
)
def test_format_amount_is_plain_and_parses_back(amount: Decimal, currency: str) -> None:
    text = format_amount(amount, currency)
    assert "E" not in text and "e" not in text
    assert parse_decimal(text, "x", allow_negative=True) == quantize(amount, currency)
