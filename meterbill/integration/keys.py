"""Deterministic idempotency keys derived from meterbill ids (pure).

The same write of the same meterbill object always carries the same key, so a retried Lambda, an
SQS redelivery or a DLQ redrive reuses it and the vendor answers with the first result instead of
creating a second object. Stripe forgets keys after ~24 h: a key alone is not exactly-once, which is
why ``InvoiceSink.find_invoice`` exists. ``version`` is bumped only for a deliberate re-push.
"""

from __future__ import annotations

import hashlib
import re

MAX_KEY = 255                      # Stripe's limit; Xero's is 128, checked by its module
_PART = re.compile(r"[A-Za-z0-9_.\-]+", re.ASCII)


def idempotency_key(integration: str, object_id: str, action: str, *parts: str | int, version: int = 1) -> str:
    """``mb:<integration>:<object id>:<action>[:<part>…]:v<version>``, e.g.
    ``mb:stripe:in_3f…:create:v1`` or ``mb:stripe:in_3f…:line:17:v1``. A part that is not a
    plain id (letters, digits, ``_ . -``; customer ids may hold spaces, ``:`` or non-ASCII
    letters) is replaced by ``h-`` and a digest of it; a key that would exceed 255 characters is
    shortened with a digest of its full text. Either way it stays unique and deterministic."""
    pieces = [_piece(p) for p in (integration, object_id, action, *parts)]
    if type(version) is not int or version < 1:
        raise ValueError("idempotency key version must be a positive integer")
    return _fit(":".join(["mb", *pieces, f"v{version}"]))


def derive(key: str, *parts: str | int) -> str:
    """The key of one step of a write made under ``key`` (``…:v1/item/L3``): a push that creates
    an invoice, adds its items and finalizes it sends a different, still deterministic key per
    call, because the vendor refuses one key with different parameters."""
    return _fit("/".join([key, *map(_piece, parts)]))


def _piece(part: str | int) -> str:
    text = str(part)
    if not text:
        raise ValueError("an idempotency key part must not be empty")
    if _PART.fullmatch(text):
        return text
    return "h-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def _fit(key: str) -> str:
    """``key`` if it fits in 255 characters, else its head and a digest of all of it."""
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:MAX_KEY - len(digest) - 1]}~{digest}"
