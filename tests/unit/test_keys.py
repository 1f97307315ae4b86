"""KeyService on an in-memory store: the Authorization header, expiry, revocation and the
bounds of its caches (how many store reads a request costs)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from meterbill.services.errors import Forbidden, InvalidField, NotFound, Unauthorized
from meterbill.services.keys import KNOWN_TTL_S, UNKNOWN_TTL_S, KeyService, digest

SECRET = "mbtest_admin_0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class MemoryKeys:
    """The key part of BillingStore (as DynamoBillingStore behaves), counting reads and writes."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.reads = 0
        self.touches: list[str] = []

    def put_key(self, d: str, doc: dict[str, Any]) -> None:
        assert d not in self.items
        self.items[d] = {**doc, "digest": d}

    def get_key(self, d: str) -> dict[str, Any] | None:
        self.reads += 1
        found = self.items.get(d)
        return dict(found) if found else None

    def find_key(self, key_id: str) -> dict[str, Any] | None:
        return next((dict(i) for i in self.items.values() if i.get("id") == key_id), None)

    def revoke_key(self, d: str, at_iso: str) -> dict[str, Any]:
        self.items[d].setdefault("revoked_at", at_iso)
        return dict(self.items[d])

    def touch_key(self, d: str, at_iso: str) -> None:
        self.touches.append(at_iso)
        self.items[d]["last_used_at"] = at_iso


@pytest.fixture
def store() -> MemoryKeys:
    return MemoryKeys()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


def instance(store: MemoryKeys, clock: FakeClock, ticks: Ticks, **kw: Any) -> KeyService:
    """One Lambda instance: its own caches over the shared table."""
    return KeyService(store, clock, monotonic=ticks, **kw)  # type: ignore[arg-type]


@pytest.fixture
def keys(store: MemoryKeys, clock: FakeClock, ticks: Ticks) -> KeyService:
    service = instance(store, clock, ticks)
    service.create(["admin"], name="admin", secret=SECRET)
    return service


@pytest.mark.parametrize("header", [f"Bearer {SECRET}", f"bearer {SECRET}", f"BEARER {SECRET}",
                                    f"bEaReR {SECRET}", f"Bearer   {SECRET}", f"  Bearer {SECRET}  "])
def test_the_bearer_scheme_is_case_insensitive(keys: KeyService, header: str) -> None:
    """RFC 9110 11.1: the auth-scheme is case-insensitive; 1*SP separates it from the token."""
    assert keys.authorize(header, "admin")["name"] == "admin"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "bearer    ", SECRET, f"Basic {SECRET}",
                                    f"Bearerx {SECRET}", f"Token {SECRET}", f"Bearer {SECRET} extra"])
def test_anything_else_is_unauthorized(keys: KeyService, header: str | None) -> None:
    with pytest.raises(Unauthorized):
        keys.authorize(header, "read")


def test_scope_is_still_checked(store: MemoryKeys) -> None:
    service = KeyService(store, FakeClock())  # type: ignore[arg-type]
    service.create(["ingest"], secret="mbtest_ingest_0123456789abcdef")
    with pytest.raises(Forbidden):
        service.authorize("bearer mbtest_ingest_0123456789abcdef", "read")


# -- revocation and expiry ------------------------------------------------------------------
def test_a_revoked_key_is_refused_by_every_instance_within_the_cache_bound(
        store: MemoryKeys, clock: FakeClock, ticks: Ticks) -> None:
    admin, other = instance(store, clock, ticks), instance(store, clock, ticks)
    _, doc = admin.create(["ingest"], name="ci", secret="mbtest_ingest_0123456789abcdef")
    header = "Bearer mbtest_ingest_0123456789abcdef"
    admin.authorize(header, "ingest")
    other.authorize(header, "ingest")          # cached by the other instance
    revoked = admin.revoke(doc["id"])
    assert revoked["status"] == "revoked" and revoked["revoked_at"] == "2026-11-05T12:00:00Z"
    with pytest.raises(Unauthorized, match="revoked"):
        admin.authorize(header, "ingest")      # the revoking instance: at once
    ticks.t += KNOWN_TTL_S + 0.001
    with pytest.raises(Unauthorized, match="revoked"):
        other.authorize(header, "ingest")      # every other instance: after at most KNOWN_TTL_S
    assert KNOWN_TTL_S <= 10


def test_revoking_twice_keeps_the_first_time_and_unknown_ids_are_404(keys: KeyService, clock: FakeClock) -> None:
    [doc] = [keys.view(d) for d in keys._store.items.values()]  # type: ignore[attr-defined]
    first = keys.revoke(doc["id"])
    clock.now += timedelta(minutes=5)
    assert keys.revoke(doc["id"])["revoked_at"] == first["revoked_at"]
    for bad in ("key_0000000000000000", "nope", doc["id"].upper()):
        with pytest.raises(NotFound):
            keys.revoke(bad)


def test_a_revoked_secret_cannot_be_created_again(keys: KeyService) -> None:
    [doc] = keys._store.items.values()  # type: ignore[attr-defined]
    keys.revoke(doc["id"])
    with pytest.raises(InvalidField, match="revoked"):
        keys.create(["admin"], secret=SECRET)


def test_an_expired_key_is_refused_exactly_at_its_expiry(store: MemoryKeys, clock: FakeClock, ticks: Ticks) -> None:
    service = instance(store, clock, ticks)
    _, doc = service.create(["read"], secret="mbtest_read_0123456789abcdef", expires_at=clock.now + timedelta(days=1))
    assert doc["expires_at"] == "2026-11-06T12:00:00Z" and doc["status"] == "active"
    header = "bearer mbtest_read_0123456789abcdef"
    service.authorize(header, "read")
    clock.now += timedelta(days=1)  # still cached: expiry is checked on every request
    with pytest.raises(Unauthorized, match="expired"):
        service.authorize(header, "read")
    assert service.view(store.get_key(digest("mbtest_read_0123456789abcdef")) or {})["status"] == "expired"
    with pytest.raises(InvalidField, match="future"):
        service.create(["read"], expires_at=clock.now)


# -- what an unknown key costs ----------------------------------------------------------------
def test_an_unknown_key_costs_one_read_per_instance_per_negative_ttl(keys: KeyService, store: MemoryKeys,
                                                                     ticks: Ticks) -> None:
    store.reads = 0
    for _ in range(50):
        with pytest.raises(Unauthorized):
            keys.authorize("Bearer mb_unknown_key_0123456789abcdef", "read")
    assert store.reads == 1
    ticks.t += UNKNOWN_TTL_S + 0.001
    with pytest.raises(Unauthorized):
        keys.authorize("Bearer mb_unknown_key_0123456789abcdef", "read")
    assert store.reads == 2


def test_a_key_created_after_it_was_tried_works_within_the_negative_ttl(
        store: MemoryKeys, clock: FakeClock, ticks: Ticks) -> None:
    creator, other = instance(store, clock, ticks), instance(store, clock, ticks)
    header = "Bearer mb_created_later_0123456789abcdef"
    for service in (creator, other):
        with pytest.raises(Unauthorized):
            service.authorize(header, "read")
    creator.create(["read"], secret="mb_created_later_0123456789abcdef")
    creator.authorize(header, "read")          # the creating instance forgets its miss
    ticks.t += UNKNOWN_TTL_S + 0.001
    other.authorize(header, "read")


def test_too_short_keys_are_refused_without_a_read(keys: KeyService, store: MemoryKeys) -> None:
    store.reads = 0
    for token in ("x", "mb_short", "a" * 15):
        with pytest.raises(Unauthorized):
            keys.authorize(f"Bearer {token}", "read")
    assert store.reads == 0


def test_a_flood_of_unknown_keys_never_evicts_known_keys(store: MemoryKeys, clock: FakeClock, ticks: Ticks) -> None:
    service = instance(store, clock, ticks, max_entries=100)
    service.create(["admin"], secret=SECRET)
    service.authorize(f"Bearer {SECRET}", "admin")
    store.reads = 0
    for i in range(1000):
        with pytest.raises(Unauthorized):
            service.authorize(f"Bearer mb_flood_{i:012d}_0123456789", "read")
    assert store.reads == 1000                    # distinct unknown keys: API Gateway throttling bounds these
    assert len(service._unknown) == 100           # memory stays bounded
    service.authorize(f"Bearer {SECRET}", "admin")
    assert store.reads == 1000                    # the known key was still cached


# -- listing --------------------------------------------------------------------------------
def test_the_view_never_shows_the_secret_or_its_digest(keys: KeyService, store: MemoryKeys) -> None:
    key, doc = keys.create(["read"], name="reporting")
    assert set(doc) == {"id", "name", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at", "status"}
    assert doc["id"].startswith("key_") and len(doc["id"]) == 20
    shown = repr(doc)
    assert key not in shown and key[3:10] not in shown and digest(key)[:8] not in shown


def test_last_use_is_recorded_at_most_hourly(keys: KeyService, store: MemoryKeys, clock: FakeClock) -> None:
    for _ in range(5):
        keys.authorize(f"Bearer {SECRET}", "admin")
    clock.now += timedelta(minutes=59)
    keys.authorize(f"Bearer {SECRET}", "admin")
    clock.now += timedelta(minutes=2)
    keys.authorize(f"Bearer {SECRET}", "admin")
    assert store.touches == ["2026-11-05T12:00:00Z", "2026-11-05T13:01:00Z"]
