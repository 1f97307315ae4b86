"""Signed customer-portal links: a token names exactly one customer and when it stops working.

Format (URL-safe, no padding)::

    v1.<customer id, base64url>.<expiry, Unix seconds>.<HMAC-SHA256 of "v1.<customer b64>.<expiry>", base64url>

The HMAC key is the deployment's portal secret (``METERBILL_PORTAL_SECRET``). Verification
recomputes the MAC and compares in constant time (``hmac.compare_digest``) before anything in the
token is trusted; only then is the expiry read. Pure: the caller passes the current time (no clock
here), so tests sign and verify with a fixed instant.

The budget form of the portal carries a value derived from the token (``form_value``): a form
posted from another site cannot know it (it needs the token, which only the link holder has).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from meterbill.domain.errors import InvalidField
from meterbill.domain.ids import check_id

VERSION = "v1"
MIN_SECRET_BYTES = 16
MAX_DAYS = 366
MAX_TOKEN_CHARS = 512


class PortalTokenError(Exception):
    """A token the portal refuses. ``reason`` is for logs only; a visitor sees a plain page."""

    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TamperedToken(PortalTokenError):
    """Malformed, signed with another secret, or changed after signing."""


class ExpiredToken(PortalTokenError):
    """Genuine, but past its expiry."""

    status = 410


@dataclass(frozen=True, slots=True)
class PortalGrant:
    customer_id: str
    expires_s: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise TamperedToken("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TamperedToken("not base64url") from None


def _mac(secret: bytes, message: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the portal secret must be at least {MIN_SECRET_BYTES} bytes")
    return hmac.new(secret, message.encode("ascii"), hashlib.sha256).digest()


def sign(secret: bytes, customer_id: str, expires_s: int) -> str:
    """A token for ``customer_id`` valid until ``expires_s`` (Unix seconds)."""
    check_id(customer_id, "customer")
    body = f"{VERSION}.{_b64(customer_id.encode('utf-8'))}.{int(expires_s)}"
    return f"{body}.{_b64(_mac(secret, body))}"


def verify(secret: bytes, token: str, now_s: float) -> PortalGrant:
    """The customer the token names, if it was signed with ``secret``, unchanged, and not expired
    at ``now_s``; :class:`TamperedToken` / :class:`ExpiredToken` otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TamperedToken("malformed")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise TamperedToken("malformed")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(_mac(secret, body), _unb64(parts[3])):
        raise TamperedToken("signature does not match")
    # signed by us: what follows was written by sign() and cannot fail unless the secret leaked
    try:
        customer_id = _unb64(parts[1]).decode("utf-8")
        expires_s = int(parts[2])
    except (UnicodeDecodeError, ValueError):
        raise TamperedToken("malformed") from None
    if now_s >= expires_s:
        raise ExpiredToken("expired")
    return PortalGrant(customer_id, expires_s)


def form_value(secret: bytes, token: str) -> str:
    """The per-token value the portal's forms carry (CSRF): derived, never stored."""
    return _b64(_mac(secret, f"form|{token}"))[:32]


def form_value_matches(secret: bytes, token: str, sent: str | None) -> bool:
    if not isinstance(sent, str):
        return False
    return hmac.compare_digest(form_value(secret, token).encode("ascii"), sent.encode("utf-8", "replace"))


def expiry(now_s: float, days: int) -> int:
    """The expiry of a link valid ``days`` days from ``now_s`` (1 to MAX_DAYS)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidField("days", f"must be a whole number of days from 1 to {MAX_DAYS}")
    return int(now_s) + days * 86400
