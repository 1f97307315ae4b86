"""Signed portal links: a token names one customer until its expiry; anything changed, signed with
another key or past its expiry is refused. Times are fixed instants, never today's."""

from __future__ import annotations

import pytest

from meterbill.domain import portal_tokens as pt
from meterbill.domain.errors import InvalidField

KEY = b"k" * 32
NOW = 1_793_880_000          # 2026-11-05T12:00:00Z
DAY = 86_400


def test_a_token_names_its_customer_until_it_expires() -> None:
    token = pt.sign(KEY, "acme", NOW + DAY)
    grant = pt.verify(KEY, token, NOW)
    assert (grant.customer_id, grant.expires_s) == ("acme", NOW + DAY)
    assert pt.verify(KEY, token, NOW + DAY - 1).customer_id == "acme"
    with pytest.raises(pt.ExpiredToken) as exc:
        pt.verify(KEY, token, NOW + DAY)
    assert exc.value.status == 410


@pytest.mark.parametrize("customer", ["acme", "café bar", "a.b:c@d+e", "x" * 128])
def test_any_customer_id_round_trips(customer: str) -> None:
    assert pt.verify(KEY, pt.sign(KEY, customer, NOW + 60), NOW).customer_id == customer


def test_a_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(pt.TamperedToken):
        pt.verify(KEY, pt.sign(b"o" * 32, "acme", NOW + DAY), NOW)


def test_changing_the_customer_or_the_expiry_breaks_the_signature() -> None:
    token = pt.sign(KEY, "acme", NOW + DAY)
    version, _, expires, mac = token.split(".")
    other = pt.sign(KEY, "globex", NOW + DAY).split(".")[1]
    for forged in (f"{version}.{other}.{expires}.{mac}",              # another customer, same signature
                   f"{version}.{token.split('.')[1]}.{NOW + 400 * DAY}.{mac}",   # a later expiry
                   token[:-2] + ("AA" if not token.endswith("AA") else "BB"),   # a changed signature
                   token + "A", token[:-1], "v2" + token[2:], token.replace(".", "..", 1), "", "garbage",
                   "v1.YWNtZQ.1.€", "v1." + "A" * 600):
        with pytest.raises(pt.TamperedToken):
            pt.verify(KEY, forged, NOW)


def test_a_forged_token_is_refused_even_when_expired() -> None:
    """The signature is checked before the expiry: a forged token never learns it is 'expired'."""
    token = pt.sign(KEY, "acme", NOW - DAY)
    with pytest.raises(pt.TamperedToken):
        pt.verify(KEY, token[:-3] + "abc", NOW)


def test_the_form_value_is_bound_to_the_token() -> None:
    a, b = pt.sign(KEY, "acme", NOW + DAY), pt.sign(KEY, "acme", NOW + 2 * DAY)
    assert pt.form_value_matches(KEY, a, pt.form_value(KEY, a))
    assert not pt.form_value_matches(KEY, a, pt.form_value(KEY, b))
    assert not pt.form_value_matches(KEY, a, None)
    assert not pt.form_value_matches(KEY, a, "")


def test_expiry_days_are_checked() -> None:
    assert pt.expiry(NOW, 7) == NOW + 7 * DAY
    for bad in (0, 367, -1, True):
        with pytest.raises(InvalidField) as exc:
            pt.expiry(NOW, bad)
        assert exc.value.field == "days"


def test_a_short_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        pt.sign(b"short", "acme", NOW)
