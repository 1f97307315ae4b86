"""API keys: random secrets shown once, stored only as SHA-256 digests, with scopes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from meterbill.domain.instants import iso
from meterbill.ports import BillingStore, Clock
from meterbill.services.cache import TTLMap
from meterbill.services.errors import Forbidden, InvalidField, Unauthorized

SCOPES = ("ingest", "read", "admin")
IMPLIED = {"admin": {"admin", "read", "ingest"}, "read": {"read"}, "ingest": {"ingest"}}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None. The scheme is case-insensitive and
    separated from the token by one or more spaces (RFC 9110, 11.1 and 11.4)."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class KeyService:
    def __init__(self, store: BillingStore, clock: Clock, cache_ttl_s: float = 60.0) -> None:
        self._store = store
        self._clock = clock
        self._cache = TTLMap(self._load, cache_ttl_s)

    def _load(self, digests: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for d in digests:
            doc = self._store.get_key(d)
            if doc is not None:
                out[d] = doc
        return out

    def create(self, scopes: Iterable[str], name: str = "", secret: str | None = None) -> tuple[str, dict[str, Any]]:
        scopes = sorted(set(scopes))
        if not scopes or any(s not in SCOPES for s in scopes):
            raise InvalidField("scope", f"must be one or more of: {', '.join(SCOPES)}")
        key = secret or f"mb_{secrets.token_urlsafe(32)}"
        if len(key) < 16:
            raise InvalidField("key", "must be at least 16 characters")
        d = digest(key)
        doc = {"name": name, "scopes": scopes, "created_at": iso(self._clock()), "prefix": key[:7]}
        existing = self._store.get_key(d)
        if existing is None:
            self._store.put_key(d, doc)
        elif set(existing["scopes"]) != set(scopes):
            raise InvalidField("key", "this key already exists with other scopes")
        return key, doc

    def authorize(self, header: str | None, needed: str) -> dict[str, Any]:
        token = bearer_token(header)
        if token is None:
            raise Unauthorized("send 'Authorization: Bearer <api key>'", field="authorization")
        d = digest(token)
        doc = self._cache.get_many({d}).get(d)
        if doc is None:
            raise Unauthorized("the API key is not valid", field="authorization")
        granted = set().union(*(IMPLIED[s] for s in doc["scopes"]))
        if needed not in granted:
            raise Forbidden(f"this key lacks the '{needed}' scope", field="authorization")
        return doc
