"""API keys: random secrets shown once, stored only as SHA-256 digests, with scopes.

A key has a public id (``key_`` + 16 random hex digits: neither the secret nor derived from it),
a name, scopes, ``created_at``, an optional ``expires_at``, ``revoked_at`` once revoked (the item
is kept, so a revoked key stays listed and refused) and ``last_used_at`` (to the hour).

Every request is authorized from a per-instance cache (docs/decisions.md, "Keys and template
defences"): a known key's item is re-read after ``KNOWN_TTL_S``, so a revocation is refused by
every instance at most that long after it was stored (the reads are strongly consistent); an
unknown key is remembered for ``UNKNOWN_TTL_S``, so repeating it costs each instance at most one
read per that time. Both caches are bounded; unknown keys can never evict known ones.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from meterbill.domain.instants import iso, parse_instant
from meterbill.ports import BillingStore, Clock
from meterbill.services.errors import Forbidden, InvalidField, NotFound, Unauthorized

log = logging.getLogger(__name__)

SCOPES = ("ingest", "read", "admin")
IMPLIED = {"admin": {"admin", "read", "ingest"}, "read": {"read"}, "ingest": {"ingest"}}
KNOWN_TTL_S = 5.0        # bound on how long a revoked key is still accepted by an instance
UNKNOWN_TTL_S = 5.0      # bound on how long a key created after it was tried is still refused
CACHE_MAX = 10_000       # entries in each cache
MIN_KEY_CHARS = 16       # no stored key is shorter: shorter ones are refused without a read
TOUCH_EVERY = timedelta(hours=1)  # last_used_at is written at most this often per key and instance
KEY_ID = re.compile(r"key_[0-9a-f]{16}")
PUBLIC = ("id", "name", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None. The scheme is case-insensitive and
    separated from the token by one or more spaces (RFC 9110, 11.1 and 11.4)."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class KeyService:
    def __init__(self, store: BillingStore, clock: Clock, known_ttl_s: float = KNOWN_TTL_S,
                 unknown_ttl_s: float = UNKNOWN_TTL_S, max_entries: int = CACHE_MAX,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._known_ttl, self._unknown_ttl, self._max, self._mono = known_ttl_s, unknown_ttl_s, max_entries, monotonic
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    # -- cache ---------------------------------------------------------------------------
    def _lookup(self, d: str) -> dict[str, Any] | None:
        now = self._mono()
        with self._lock:
            hit = self._known.get(d)
            if hit is not None and now - hit[0] <= self._known_ttl:
                return hit[1]
            missed = self._unknown.get(d)
            if missed is not None and now - missed <= self._unknown_ttl:
                return None
        doc = self._store.get_key(d)
        with self._lock:
            if doc is None:
                self._known.pop(d, None)
                self._unknown[d] = now
                self._unknown.move_to_end(d)
                while len(self._unknown) > self._max:
                    self._unknown.popitem(last=False)
            else:
                self._unknown.pop(d, None)
                if d not in self._known and len(self._known) >= self._max:
                    self._known.clear()
                self._known[d] = (now, doc)
        return doc

    def _forget(self, d: str) -> None:
        with self._lock:
            self._known.pop(d, None)
            self._unknown.pop(d, None)

    # -- use -----------------------------------------------------------------------------
    def authorize(self, header: str | None, needed: str) -> dict[str, Any]:
        token = bearer_token(header)
        if token is None:
            raise Unauthorized("send 'Authorization: Bearer <api key>'", field="authorization")
        doc = self._lookup(digest(token)) if len(token) >= MIN_KEY_CHARS else None
        if doc is None:
            raise Unauthorized("the API key is not valid", field="authorization")
        now = self._clock()
        if doc.get("revoked_at"):
            raise Unauthorized("the API key was revoked", field="authorization")
        expires = doc.get("expires_at")
        if expires and parse_instant(expires, "expires_at") <= now:
            raise Unauthorized("the API key has expired", field="authorization")
        granted = set().union(*(IMPLIED[s] for s in doc["scopes"]))
        if needed not in granted:
            raise Forbidden(f"this key lacks the '{needed}' scope", field="authorization")
        self._note_use(doc, now)
        return doc

    def _note_use(self, doc: dict[str, Any], now: datetime) -> None:
        last = doc.get("last_used_at")
        if (last and parse_instant(last, "last_used_at") > now - TOUCH_EVERY) or "digest" not in doc:
            return
        stamp = iso(now.replace(microsecond=0))
        doc["last_used_at"] = stamp  # the cached doc: this instance writes at most once per TOUCH_EVERY
        try:
            self._store.touch_key(doc["digest"], stamp)
        except Exception:  # noqa: BLE001 - bookkeeping never refuses a valid key
            log.warning("could not record the use of API key %s", doc.get("id"), exc_info=True)

    # -- manage --------------------------------------------------------------------------
    def create(self, scopes: Iterable[str], name: str = "", secret: str | None = None,
               expires_at: datetime | None = None) -> tuple[str, dict[str, Any]]:
        scopes = sorted(set(scopes))
        if not scopes or any(s not in SCOPES for s in scopes):
            raise InvalidField("scope", f"must be one or more of: {', '.join(SCOPES)}")
        if len(name) > 200:
            raise InvalidField("name", "must be at most 200 characters")
        key = secret or f"mb_{secrets.token_urlsafe(32)}"
        if len(key) < MIN_KEY_CHARS:
            raise InvalidField("key", f"must be at least {MIN_KEY_CHARS} characters")
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidField("expires_at", "must be in the future")
        d = digest(key)
        existing = self._store.get_key(d)
        if existing is not None:
            if set(existing["scopes"]) != set(scopes):
                raise InvalidField("key", "this key already exists with other scopes")
            if existing.get("revoked_at"):
                raise InvalidField("key", "this key was revoked; create a new one")
            return key, self.view(existing)
        doc: dict[str, Any] = {"id": new_key_id(), "name": name, "scopes": scopes, "created_at": iso(now)}
        if expires_at is not None:
            doc["expires_at"] = iso(expires_at)
        self._store.put_key(d, doc)
        self._forget(d)
        return key, self.view(doc)

    def view(self, doc: dict[str, Any]) -> dict[str, Any]:
        """What may be shown of a key: never the secret, its digest or a prefix of either."""
        out = {f: doc.get(f) for f in PUBLIC}
        expires = doc.get("expires_at")
        out["status"] = ("revoked" if doc.get("revoked_at") else
                         "expired" if expires and parse_instant(expires, "expires_at") <= self._clock() else "active")
        return out

    def list_keys(self, limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        docs, nxt = self._store.list_keys(limit, cursor)
        return [self.view(d) for d in docs], nxt

    def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke by public id; revoking again keeps the first time. Refused everywhere within
        KNOWN_TTL_S (at once by this instance)."""
        found = self._store.find_key(key_id) if KEY_ID.fullmatch(key_id) else None
        if found is None:
            raise NotFound(f"API key '{key_id[:40]}' does not exist", field="id")
        doc = self._store.revoke_key(found["digest"], iso(self._clock()))
        self._forget(found["digest"])
        return self.view(doc)

    def assign_missing_ids(self) -> list[dict[str, Any]]:
        """Give keys stored before public ids existed an id, so they are listed and revocable."""
        done = []
        for doc in self._store.unlisted_keys():
            key_id = new_key_id()
            if self._store.assign_key_id(doc["digest"], key_id):
                done.append(self.view({**doc, "id": key_id}))
        return done
